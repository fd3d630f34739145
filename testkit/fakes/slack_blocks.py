"""Block Kit and view validation: every reason real Slack would refuse a message or a view.

Strict where Slack is strict, so tests catch what production would refuse; slack_sdk's models add their own
checks (`Block.parse(...).validate_json()`, `View(**view).validate_json()`).
"""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

JSONDict = dict[str, Any]

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELD = 2000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_ACTIONS_ELEMENTS = 25
MAX_ID = 255
MAX_TEXT = 40_000
MAX_VIEW_BLOCKS = 100
VIEW_TYPES = ("modal", "home")


def _text_of(obj: Any) -> str | None:
    return obj.get("text") if isinstance(obj, dict) and isinstance(obj.get("text"), str) else None


def block_problems(blocks: Any, *, max_blocks: int = MAX_BLOCKS) -> list[str]:
    """Every reason real Slack would answer `invalid_blocks` for `blocks` (empty list: valid)."""
    if not isinstance(blocks, list):
        return [f"blocks must be a list, got {type(blocks).__name__}"]
    problems: list[str] = []
    if len(blocks) > max_blocks:
        problems.append(f"{len(blocks)} blocks > {max_blocks}")
    for i, block in enumerate(blocks):
        if not isinstance(block, dict):
            problems.append(f"block[{i}] is not an object")
            continue
        problems += [f"block[{i}] ({block.get('type')}): {p}" for p in _one_block_problems(block)]
    return problems


def _one_block_problems(block: JSONDict) -> list[str]:
    problems: list[str] = []
    kind = block.get("type")
    if len(str(block.get("block_id", ""))) > MAX_ID:
        problems.append(f"block_id > {MAX_ID}")
    if kind in ("section", "header") and "text" in block and _text_of(block["text"]) is None:
        problems.append("text must be a text object")
    text = _text_of(block.get("text")) or ""
    if kind == "section":
        if len(text) > MAX_SECTION_TEXT:
            problems.append(f"section text {len(text)} > {MAX_SECTION_TEXT}")
        for f in block.get("fields") or []:
            if len(_text_of(f) or "") > MAX_SECTION_FIELD:
                problems.append(f"section field > {MAX_SECTION_FIELD}")
    if kind == "header" and len(text) > MAX_HEADER_TEXT:
        problems.append(f"header text {len(text)} > {MAX_HEADER_TEXT}")
    elements = list(block.get("elements") or []) if kind == "actions" else []
    if len(elements) > MAX_ACTIONS_ELEMENTS:
        problems.append(f"{len(elements)} action elements > {MAX_ACTIONS_ELEMENTS}")
    if isinstance(block.get("accessory"), dict):
        elements.append(block["accessory"])
    for el in elements:
        problems += _element_problems(el)
    try:
        parsed = Block.parse(block)
        if parsed is None:
            problems.append(f"unknown block type {kind!r}")
        else:
            parsed.validate_json()
    except Exception as exc:  # slack_sdk raises SlackObjectFormationError, TypeError, ...
        problems.append(f"slack_sdk: {exc}")
    return problems


def _element_problems(el: Any) -> list[str]:
    if not isinstance(el, dict):
        return ["element is not an object"]
    problems: list[str] = []
    if len(str(el.get("action_id", ""))) > MAX_ID:
        problems.append(f"action_id > {MAX_ID}")
    if el.get("type") == "button":
        label = _text_of(el.get("text"))
        if label is None:
            problems.append("button text must be a text object")
        elif len(label) > MAX_BUTTON_TEXT:
            problems.append(f"button text {len(label)} > {MAX_BUTTON_TEXT}")
        if len(str(el.get("value", ""))) > MAX_BUTTON_VALUE:
            problems.append(f"button value > {MAX_BUTTON_VALUE}")
    return problems


def content_problem(args: JSONDict, *, require_text: bool) -> tuple[str, str] | None:
    """(error, detail) for a message body real Slack would refuse, else None."""
    text = args.get("text")
    if isinstance(text, str) and len(text) > MAX_TEXT:
        return "msg_too_long", f"text is {len(text)} chars > {MAX_TEXT}"
    if "blocks" in args:
        problems = block_problems(args["blocks"])
        if problems:
            return "invalid_blocks", "; ".join(problems)
    if require_text and not text and not args.get("blocks") and not args.get("attachments"):
        return "no_text", "no text, blocks or attachments"
    return None



def view_problems(view: Any) -> list[str]:
    """Every reason real Slack would answer `invalid_arguments` to views.open/update/publish (empty: valid)."""
    if not isinstance(view, dict):
        return [f"view must be an object, got {type(view).__name__}"]
    problems: list[str] = []
    kind = view.get("type")
    if kind not in VIEW_TYPES:
        problems.append(f"view type must be one of {VIEW_TYPES}, got {kind!r}")
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        problems.append("view must have a non-empty list of blocks")
    else:
        problems += block_problems(blocks, max_blocks=MAX_VIEW_BLOCKS)
        if kind == "modal" and any(isinstance(b, dict) and b.get("type") == "input" for b in blocks) \
                and not view.get("submit"):
            problems.append("a modal with input blocks needs a submit button")
    if kind == "modal" and not view.get("title"):
        problems.append("a modal needs a title")
    try:
        View(**view).validate_json()
    except Exception as exc:  # SlackObjectFormationError, TypeError for unexpected shapes, ...
        problems.append(f"slack_sdk: {exc}")
    return problems


def error_result(error: str | tuple[str, str]) -> JSONDict:
    """A Web API error answer; a (error, detail) tuple records the detail on the call (not sent to the app)."""
    if isinstance(error, tuple):
        return {"ok": False, "error": error[0], "_detail": error[1]}
    return {"ok": False, "error": error}
