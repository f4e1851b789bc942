"""MATH answer handling: boxed-answer parsing, Minerva's final-answer normalizer and the MATH equivalence check.

Three published pieces, reimplemented with their exact behaviour because scores depend on every rule:

* ``reference_answer``: open-instruct's reference answer (``eval/MATH/utilities.py``): the contents
  of a solution's last ``\\boxed{...}``, braces balanced; ``""`` when the last box is written
  ``\\boxed 5`` or ``\\fbox{4}``, never closes, or there is none (the problem stays in the set).
* ``last_boxed`` / ``unbox``: the lm-evaluation-harness reading (``minerva_utils.py``), which also
  unboxes ``\\boxed x`` and ``\\fbox{x}``; used only for the flexible reading of model outputs.
* ``normalize_final_answer``: the normalizer of Lewkowycz et al. 2022 (Minerva), appendix D, as
  open-instruct and lm-evaluation-harness's ``minerva_math`` apply it to both sides.
* ``is_equiv``: the string canonicalisation shipped with the MATH benchmark (Hendrycks et al.
  2021): ``\\dfrac``/``\\tfrac``, ``\\left``/``\\right``, degrees, units, ``a/b`` -> ``\\frac{a}{b}``,
  ``0.5`` -> ``\\frac{1}{2}``, spaces. A malformed string makes it fall back to plain equality.
"""

from __future__ import annotations

import re

INVALID = "[invalidanswer]"

# Minerva, appendix D: literal replacements, then removed words and TeX fragments, in this order.
_SUBSTITUTIONS = (
    ("an ", ""), ("a ", ""), (".$", "$"), ("\\$", ""), ("\\ ", ""), (" ", ""), ("mbox", "text"),
    (",\\text{and}", ","), ("\\text{and}", ","), ("\\text{m}", "\\text{}"),
)  # fmt: skip
_REMOVED = (
    "square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units", "\\ldots", "sue",
    "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals", "edges",
    "students", "childrentickets", "multiples", "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2",
    "\\text{}^3", "\\text{\n}", "\\text{}", "\\mathrm{th}", "^\\circ", "^{\\circ}", "\\;", ",\\!", "{,}", '"',
    "\\dots",
)  # fmt: skip

_FINAL_ANSWER = re.compile(r"Final Answer: The final answer is(.*?). I hope it is correct.")
_HOPE = "I hope it is correct."


def _last_box(text: str) -> str | None:
    """From the last ``\\boxed`` (else ``\\fbox``) to the brace that brings the count back to zero; None if absent or unclosed."""
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
        if start < 0:
            return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None  # an opened box that never closes


def last_boxed(text: str) -> str | None:
    """The last ``\\boxed{...}``/``\\fbox{...}`` with balanced braces (``\\boxed x`` up to ``$``); None if absent."""
    if "\\boxed " in text:
        return "\\boxed " + text.split("\\boxed ")[-1].split("$")[0]
    return _last_box(text)


def unbox(boxed: str) -> str:
    """Contents of ``\\boxed{x}`` / ``\\boxed x`` / ``\\fbox{x}``; ValueError for anything else."""
    if boxed.startswith("\\boxed "):
        return boxed[len("\\boxed ") :]
    for left in ("\\boxed{", "\\fbox{"):
        if boxed.startswith(left) and boxed.endswith("}"):
            return boxed[len(left) : -1]
    raise ValueError(f"not a boxed expression: {boxed[:40]!r}")


def normalize_final_answer(answer: str) -> str:
    """Minerva's normalisation of a final answer (applied to predictions and references alike)."""
    answer = answer.split("=")[-1]
    for before, after in _SUBSTITUTIONS:
        answer = answer.replace(before, after)
    for expr in _REMOVED:
        answer = answer.replace(expr, "")
    # Keep what is inside math mode, bold, boxes, overlines.
    answer = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", "$\\3$", answer)
    answer = re.sub(r"(\\text\{)(.*?)(\})", "\\2", answer)
    answer = re.sub(r"(\\textbf\{)(.*?)(\})", "\\2", answer)
    answer = re.sub(r"(\\overline\{)(.*?)(\})", "\\2", answer)
    answer = re.sub(r"(\\boxed\{)(.*)(\})", "\\2", answer)
    # Shorthand TeX: \fracab -> \frac{a}{b}, \sqrta -> \sqrt{a}.
    answer = re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}", answer)
    answer = re.sub(r"(sqrt)([^{])", "sqrt{\\2}", answer)
    answer = answer.replace("$", "")
    if answer.replace(",", "").isdigit():
        answer = answer.replace(",", "")  # 100,000 -> 100000
    return answer


def final_answer_text(output: str) -> str | None:
    """The text after "Final Answer: The final answer is" (the Minerva answer line), stripped; None if absent."""
    m = _FINAL_ANSWER.search(output + _HOPE)
    return m.group(1).strip() if m else None


def extract_strict(output: str) -> str:
    """open-instruct's MATH extraction: the normalized "Final Answer" text, else ``[invalidanswer]``."""
    text = final_answer_text(output)
    return normalize_final_answer(text) if text is not None else INVALID


def extract_flexible(output: str) -> tuple[str, str]:
    """("Final Answer" line, else the last ``\\boxed{}``) normalized, and which of the two was used (or "none")."""
    text = final_answer_text(output)
    if text is not None:
        return normalize_final_answer(text), "final_answer"
    boxed = last_boxed(output)
    if boxed is not None:
        try:
            return normalize_final_answer(unbox(boxed)), "boxed"
        except ValueError:
            pass
    return INVALID, "none"


def reference_answer(solution: str) -> str:
    """open-instruct's normalized reference answer: the last box's contents if it is ``\\boxed{...}``, else ``""``."""
    boxed = _last_box(solution) or ""
    inner = boxed[len("\\boxed{") : -1] if boxed.startswith("\\boxed{") and boxed.endswith("}") else ""
    return normalize_final_answer(inner)


# ---------------------------------------------------------------- MATH benchmark equivalence


def _fix_fracs(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{72}`` -> ``\\frac{1}{72}``; ``\\frac`` + one character leaves s
    unchanged, ``\\frac`` + nothing raises (both as the benchmark's code)."""
    parts = s.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if not part:
            raise IndexError("\\frac with nothing after it")  # the benchmark's part[0]: plain equality
        if part[:1] == "{":
            out += part
            continue
        if len(part) < 2:
            return s
        a, b, rest = part[0], part[1], part[2:]
        out += "{" + a + "}{" + b + "}" + rest if b != "{" else "{" + a + "}" + b + rest
    return out


def _fix_a_slash_b(s: str) -> str:
    """``3/4`` -> ``\\frac{3}{4}`` for plain integers; ValueError (-> plain equality) for non-integers."""
    pieces = s.split("/")
    if len(pieces) != 2:
        return s
    a, b = int(pieces[0]), int(pieces[1])  # the benchmark's code lets this ValueError escape too
    if s != f"{a}/{b}":
        return s
    return "\\frac{" + str(a) + "}{" + str(b) + "}"


def _remove_right_units(s: str) -> str:
    # "\text{ " only ever introduces units in MATH; more than one is malformed (-> plain equality).
    if "\\text{ " in s:
        pieces = s.split("\\text{ ")
        if len(pieces) != 2:
            raise ValueError("several \\text{ } units")
        return pieces[0]
    return s


def _fix_sqrt(s: str) -> str:
    if "\\sqrt" not in s:
        return s
    pieces = s.split("\\sqrt")
    out = pieces[0]
    for piece in pieces[1:]:
        if piece[0] != "{":  # IndexError on a trailing \sqrt: plain equality, as in the benchmark
            out += "\\sqrt{" + piece[0] + "}" + piece[1:]
        else:
            out += "\\sqrt" + piece
    return out


def strip_string(s: str) -> str:
    """The MATH benchmark's canonical form of an answer string (may raise on malformed input)."""
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "")
    s = _remove_right_units(s)
    s = s.replace("\\%", "")  # percent signs (the benchmark removes only the escaped form)
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    # "k = 3" -> "3" when the left side is a short name.
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = _fix_sqrt(s)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


def is_equiv(a: str | None, b: str | None) -> bool:
    """MATH equivalence: equal canonical forms; plain string equality when canonicalisation fails."""
    if a is None or b is None:
        return a is None and b is None
    try:
        return strip_string(a) == strip_string(b)
    except (ValueError, IndexError):
        return a == b
