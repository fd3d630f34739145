"""Parsing `/runpod-retry` text into a command. Pure: text in, a Command or a UsageError out."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.core.ids import id_problem, shorten
from bot.core.policies import EVERY_ENDPOINT, parse_duration

COMMAND = "/runpod-retry"
RESERVED_WORDS = ("help", "retry", "status", "history", "failed", "health", "auto")
# Each form as a person types it: a usage error shows the one form it is about, not the whole help.
RETRY_FORM = f"`{COMMAND} <endpointId> <jobId>`"
BULK_FORM = f"`{COMMAND} <endpointId> <jobId> <jobId> …`"
STATUS_FORM = f"`{COMMAND} status <endpointId> <jobId>`"
FAILED_FORM = f"`{COMMAND} failed <endpointId> [30m]`"
HISTORY_FORM = f"`{COMMAND} history [N]`"
HEALTH_FORM = f"`{COMMAND} health <endpointId>`"
HELP_FORM = f"`{COMMAND} help`"
AUTO_FORM = f"`{COMMAND} auto`"
AUTO_PAUSE_FORM = f"`{COMMAND} auto pause <endpointId|all> [2h]`"
AUTO_RESUME_FORM = f"`{COMMAND} auto resume <endpointId|all>`"
MIN_PAUSE = 60
MAX_PAUSE = 7 * 24 * 3600
DEFAULT_HISTORY = 10
MAX_HISTORY = 50
DEFAULT_FAILED_WINDOW = 30 * 60
MAX_FAILED_WINDOW = 24 * 3600
MAX_BULK_JOBS = 1000

# A RunPod API URL as people paste it: .../v2/<endpoint>/<op>/<job>
_URL_RE = re.compile(r"^https?://[^/\s]+/v2/([^/\s]+)/[A-Za-z-]+/([^/?#\s]+)/?(?:[?#]\S*)?$")
_WINDOW_RE = re.compile(r"^(\d{1,5})\s*(s|m|h)?$")
_SEPARATORS = re.compile(r"[\s,]+")
# A Slack-formatted link; its label may contain spaces or commas, so links are unwrapped before splitting.
_SLACK_LINK_RE = re.compile(r"<(https?://[^|>\s]+)(?:\|[^>]*)?>")


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Retry:
    endpoint: str
    jobs: tuple[str, ...]

    @property
    def is_bulk(self) -> bool:
        return len(self.jobs) > 1


@dataclass(frozen=True)
class Status:
    endpoint: str
    job: str


@dataclass(frozen=True)
class History:
    limit: int = DEFAULT_HISTORY


@dataclass(frozen=True)
class RetryFailed:
    endpoint: str
    window_seconds: int = DEFAULT_FAILED_WINDOW


@dataclass(frozen=True)
class CheckHealth:
    endpoint: str


@dataclass(frozen=True)
class AutoShow:
    """`auto`: the retry policies and whether each is on, in dry run or paused."""


@dataclass(frozen=True)
class AutoPause:
    scope: str               # an endpoint ID, or EVERY_ENDPOINT (`all`)
    duration: float | None   # seconds; None: until someone resumes


@dataclass(frozen=True)
class AutoResume:
    scope: str


Command = Help | Retry | Status | History | RetryFailed | CheckHealth | AutoShow | AutoPause | AutoResume


class UsageError(ValueError):
    """The text cannot be run. `problem` says what is wrong, for the person who typed it; `form` is the one usage
    line it is about."""

    def __init__(self, problem: str, bad_ids: tuple[str, ...] = (), form: str = RETRY_FORM):
        super().__init__(problem)
        self.problem = problem
        self.bad_ids = bad_ids
        self.form = form


def _unwrap_slack_link(token: str) -> str:
    # Slack turns pasted URLs into <https://…> or <https://…|label>.
    if token.startswith("<") and token.endswith(">"):
        return token[1:-1].split("|", 1)[0]
    return token


def _split_target(token: str) -> tuple[str | None, str]:
    """(endpoint or None, job) from `job`, `endpoint/job`, or a RunPod API URL."""
    token = _unwrap_slack_link(token)
    match = _URL_RE.match(token)
    if match:
        return match.group(1), match.group(2)
    if token.lower().startswith(("http://", "https://")):
        raise UsageError(f"`{shorten(token, 80)}` is a link, but not a RunPod API link like "
                         "`https://api.runpod.ai/v2/<endpointId>/status/<jobId>`.")
    if "/" in token:
        endpoint, _, job = token.partition("/")
        return endpoint, job
    return None, token


def _check(kind: str, value: str) -> str | None:
    problem = id_problem(value)
    return None if problem is None else f"{kind} `{shorten(value)}`: {problem}"


def _targets(tokens: list[str], form: str = RETRY_FORM,
             verb: str = "retried") -> tuple[str, tuple[str, ...]]:
    """The endpoint and the de-duplicated job IDs; every ID is checked before anything is returned."""
    if not tokens:
        raise UsageError(f"Tell me which job: {form}.", form=form)
    try:
        endpoint, first_job = _split_target(tokens[0])
    except UsageError as exc:
        raise UsageError(exc.problem, form=form) from None
    rest = tokens[1:]
    jobs: list[str] = []
    if endpoint is None:
        endpoint = first_job
        if not rest:
            raise UsageError(f"I got only `{shorten(endpoint)}`. I need an endpoint ID and a job ID: {form}.",
                             form=form)
    else:
        jobs.append(first_job)
    for token in rest:
        other_endpoint, job = _split_target(token)
        if other_endpoint is not None and (id_problem(other_endpoint) or "/" in job):
            # Not an `endpoint/job` pair (`bad/../id`): the whole token is a job ID, and an invalid one, named below.
            other_endpoint, job = None, _unwrap_slack_link(token)
        if other_endpoint is not None and other_endpoint != endpoint:
            raise UsageError(f"All jobs must be on one endpoint: `{shorten(endpoint)}` and "
                             f"`{shorten(other_endpoint)}` were both given. Run one command per endpoint.",
                             form=BULK_FORM)
        jobs.append(job)
    problems = [p for p in [_check("endpoint ID", endpoint)] if p]
    bad: list[str] = [endpoint] if problems else []
    for job in jobs:
        problem = _check("job ID", job)
        if problem:
            problems.append(problem)
            bad.append(job)
    if problems:
        shown = problems[:10]
        more = f"\n…and {len(problems) - 10} more." if len(problems) > 10 else ""
        raise UsageError(f"Nothing was {verb}. Fix these IDs and try again:\n• " + "\n• ".join(shown) + more,
                         tuple(bad), form)
    unique = tuple(dict.fromkeys(jobs))
    if len(unique) > MAX_BULK_JOBS:
        raise UsageError(f"That is {len(unique)} jobs; one command takes at most {MAX_BULK_JOBS}. "
                         "Split the list.", form=BULK_FORM)
    return endpoint, unique


def _parse_window(text: str) -> int:
    match = _WINDOW_RE.match(text.lower())
    if not match:
        raise UsageError(f"`{shorten(text)}` is not a time window. Use minutes like `30m`, or `2h`, `90s`.",
                         form=FAILED_FORM)
    amount = int(match.group(1))
    seconds = amount * {"s": 1, "m": 60, "h": 3600, None: 60}[match.group(2)]
    if not 0 < seconds <= MAX_FAILED_WINDOW:
        raise UsageError("The window must be between 1 second and 24 hours.", form=FAILED_FORM)
    return seconds


def _scope(word: str, form: str) -> str:
    if word.lower() in ("all", EVERY_ENDPOINT):
        return EVERY_ENDPOINT
    problem = _check("endpoint ID", word)
    if problem:
        raise UsageError(f"Nothing was changed. {problem}. Give an endpoint ID, or `all` for every endpoint.",
                         (word,), form)
    return word


def _pause_duration(text: str) -> float:
    try:
        # A bare number is minutes, as in `failed`.
        seconds = parse_duration(text + "m" if text.isascii() and text.isdigit() else text)
    except ValueError:
        raise UsageError(f"Nothing was paused. `{shorten(text)}` is not a duration: use `30m`, `2h` or `1d`, or "
                         "leave it out to pause until someone resumes.", form=AUTO_PAUSE_FORM) from None
    if not MIN_PAUSE <= seconds <= MAX_PAUSE:
        raise UsageError("Nothing was paused. A pause lasts from 1 minute to 7 days; leave the duration out to "
                         "pause until someone resumes.", form=AUTO_PAUSE_FORM)
    return float(seconds)


def _auto(args: list[str]) -> Command:
    """`auto`, `auto pause <endpoint|all> [duration]`, `auto resume <endpoint|all>`."""
    if not args:
        return AutoShow()
    verb, rest = args[0].lower(), args[1:]
    if verb == "pause":
        if not rest or len(rest) > 2:
            raise UsageError(f"Tell me which endpoint to pause, or `all`, and for how long if not until someone "
                             f"resumes: {AUTO_PAUSE_FORM}.", form=AUTO_PAUSE_FORM)
        scope = _scope(rest[0], AUTO_PAUSE_FORM)
        return AutoPause(scope, _pause_duration(rest[1]) if len(rest) == 2 else None)
    if verb == "resume":
        if len(rest) != 1:
            raise UsageError(f"Tell me which endpoint to resume, or `all`: {AUTO_RESUME_FORM}.",
                             form=AUTO_RESUME_FORM)
        return AutoResume(_scope(rest[0], AUTO_RESUME_FORM))
    raise UsageError(f"`auto` is followed by `pause` or `resume`, not `{shorten(args[0])}`: {AUTO_PAUSE_FORM} or "
                     f"{AUTO_RESUME_FORM}; {AUTO_FORM} alone lists the retry policies.", form=AUTO_FORM)


def split_words(text: str) -> list[str]:
    """The words of a command or of a list of job IDs: separated by spaces, commas or new lines, Slack's links
    unwrapped first (their labels may hold spaces)."""
    return [t for t in _SEPARATORS.split(_SLACK_LINK_RE.sub(r"\1", text).strip()) if t]


def parse_job_list(endpoint: str, text: str) -> Retry:
    """An endpoint and a list of job IDs given apart (the retry form's two fields), read with the command's grammar:
    the same separators, `endpoint/job` and RunPod links, the same checks. Raises UsageError."""
    found, jobs = _targets([endpoint, *split_words(text)])
    return Retry(found, jobs)


def parse_command(text: str) -> Command:
    """Parse the text after `/runpod-retry`. Raises UsageError with a message meant for the caller."""
    tokens = split_words(text)
    if not tokens or tokens[0].lower() in ("help", "-h", "--help", "?"):
        if len(tokens) > 1:
            raise UsageError("`help` takes no other words.", form=HELP_FORM)
        return Help()
    word, args = tokens[0].lower(), tokens[1:]
    if word == "retry":
        # `retry` is the verb people type first: it means what the bare form means, never an endpoint ID.
        endpoint, jobs = _targets(args)
        return Retry(endpoint, jobs)
    if word == "status":
        endpoint, jobs = _targets(args, STATUS_FORM, "checked")
        if len(jobs) != 1:
            raise UsageError(f"`status` takes one job: {STATUS_FORM}.", form=STATUS_FORM)
        return Status(endpoint, jobs[0])
    if word == "history":
        if len(args) > 1:
            raise UsageError("`history` takes at most one number: `/runpod-retry history 20`.", form=HISTORY_FORM)
        if not args:
            return History()
        # isascii: "²" and other digits Unicode knows pass isdigit() but not int().
        if not (args[0].isascii() and args[0].isdigit()) or not 1 <= int(args[0]) <= MAX_HISTORY:
            raise UsageError(f"`history` takes a number from 1 to {MAX_HISTORY}, got `{shorten(args[0])}`.",
                             form=HISTORY_FORM)
        return History(int(args[0]))
    if word == "failed":
        if not args or len(args) > 2:
            raise UsageError(f"Use {FAILED_FORM}.", form=FAILED_FORM)
        problem = _check("endpoint ID", args[0])
        if problem:
            raise UsageError(f"Nothing was retried. {problem}.", (args[0],), FAILED_FORM)
        window = _parse_window(args[1]) if len(args) == 2 else DEFAULT_FAILED_WINDOW
        return RetryFailed(args[0], window)
    if word == "health":
        if len(args) != 1:
            raise UsageError(f"`health` takes one endpoint ID: {HEALTH_FORM}.", form=HEALTH_FORM)
        problem = _check("endpoint ID", args[0])
        if problem:
            raise UsageError(f"Nothing was checked. {problem}.", (args[0],), HEALTH_FORM)
        return CheckHealth(args[0])
    if word == "auto":
        return _auto(args)
    endpoint, jobs = _targets(tokens)
    return Retry(endpoint, jobs)
