"""What a person is told when the app itself cannot do what was asked."""

from __future__ import annotations

from bot.core.messages.blocks import Message, message, section


def internal_error(what: str, kind: str) -> Message:
    return message(f"Something went wrong handling {what}",
                   [section(f":boom: Something went wrong on the app's side while handling {what} ({kind}). "
                            "It is in the app's log. Check the job with `/runpod-retry status <endpointId> <jobId>` "
                            "before trying again.")])


def shutting_down() -> Message:
    return message("The app is restarting", [section(":hourglass: The app is restarting. Nothing was done; try "
                                                     "again in a few seconds.")])


def database_unreachable() -> Message:
    return message("The app cannot reach its database right now; try again in a minute",
                   [section(":warning: The app cannot reach its database right now; try again in a minute. "
                            "Nothing was done: without its database the app cannot make sure a job is retried "
                            "only once.")])


def attach_failed(filename: str, error: str, advice: str) -> Message:
    """A file the app said it would attach could not be: say so under the promise, with another way to see it."""
    why = ("Slack kept failing the upload for over a minute" if error == "set_aside"
           else f"Slack refused the file (`{error}`)")
    return message(f"Could not attach {filename}", [section(f":warning: I could not attach `{filename}`: {why}. "
                                                            f"{advice}")])


def bad_button() -> Message:
    return message("That button's data is not valid",
                   [section(":warning: That button does not carry a valid endpoint and job ID, so nothing was done. "
                            "Use `/runpod-retry <endpointId> <jobId>` instead.")])


# ---------------------------------------------------------------- many jobs at once: bulk retry, storms, `failed`
