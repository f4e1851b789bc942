"""Checks every output row: roles, non-empty content, turn order, preference pairs."""

from __future__ import annotations

from typing import Any

ROLES = ("system", "user", "assistant")


def check_messages(messages: Any, *, alternate: bool = True, field: str = "messages") -> str | None:
    """Return what is wrong with a message list, or None when it is a valid conversation.

    Always: a non-empty list of ``{"role", "content"}`` objects, roles among system/user/
    assistant, string content that is not blank (a system message's may be), a system message only first, at least one
    assistant turn. With ``alternate``: user and assistant alternate, starting with user
    and ending with assistant (what the Tulu chat format trains on).
    """
    if not isinstance(messages, list) or not messages:
        return f"field '{field}' must be a non-empty list of messages"
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return f"{field}[{i}]: expected an object with 'role' and 'content'"
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            return f"{field}[{i}]: role {role!r} is not one of system, user, assistant"
        if not isinstance(content, str):
            return f"{field}[{i}]: content must be a string, got {type(content).__name__}"
        if not content.strip() and role != "system":  # an empty system prompt is trained as "<|system|>\n\n" (OpenOrca)
            return f"{field}[{i}]: empty {role} content"
        if role == "system" and i != 0:
            return f"{field}[{i}]: a system message may only come first"
        extra = set(m) - {"role", "content"}
        if extra:
            return f"{field}[{i}]: unexpected key(s) {sorted(extra)}"
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    if not any(m["role"] == "assistant" for m in turns):
        return f"field '{field}' has no assistant turn (nothing to train on)"
    if alternate:
        for i, m in enumerate(turns):
            want = "user" if i % 2 == 0 else "assistant"
            if m["role"] != want:
                offset = len(messages) - len(turns)
                return f"{field}[{i + offset}]: expected a {want} turn, got {m['role']} (turns must alternate user/assistant)"
        if turns[-1]["role"] != "assistant":
            return f"field '{field}' ends with a user turn (must end with the assistant)"
    return None


def check_row(row: dict[str, Any], *, alternate: bool = True) -> str | None:
    """Validate one output row (SFT or preference); returns the problem or None."""
    for key in ("dataset", "id"):
        if not isinstance(row.get(key), str) or not row[key]:
            return f"field '{key}' must be a non-empty string"
    problem = check_messages(row.get("messages"), alternate=alternate)
    if problem:
        return problem
    if "chosen" in row or "rejected" in row:
        for key in ("chosen", "rejected"):
            problem = check_messages(row.get(key), alternate=alternate, field=key)
            if problem:
                return problem
            if row[key][-1]["role"] != "assistant":
                return f"field '{key}' must end with an assistant turn"
        if row["chosen"][:-1] != row["rejected"][:-1]:
            return "'chosen' and 'rejected' must share the same prompt (all turns but the last)"
    return None
