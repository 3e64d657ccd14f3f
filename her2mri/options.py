"""The one choice checker of her2mri: a string option must be one of a fixed set of names.

Built on :func:`monai.utils.look_up_option` (the look-up), with the message in the project's form: it names
the argument, the value, the closest valid name and every valid name. The suggestion is difflib's closest
match (it finds abbreviations such as ``attn`` -> ``attention``, where MONAI's edit distance suggests
``mean``), else MONAI's. It sits directly in ``her2mri/`` so that every package may use it
(docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

from monai.utils import look_up_option

__all__ = ["check_choice"]

_SUGGESTION = re.compile(r"did you mean '([^']*)'\?")


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError suggesting the closest name.

    Args:
        name: argument name, quoted in the message.
        value: the value given.
        choices: the valid names.

    Returns:
        The value, unchanged.

    Raises:
        ValueError: ``value`` is not a string among ``choices``; the message names the argument, the value,
            the closest valid name and all valid names.

    Example:
        >>> check_choice("views", "single", ("single", "adjacent", "scales"))
        'single'
    """
    options = tuple(choices)
    hint = ""
    if isinstance(value, str):
        try:
            return str(look_up_option(value, options, print_all_options=False))
        except ValueError as err:
            close = difflib.get_close_matches(value, list(options), n=1, cutoff=0.5)
            m = _SUGGESTION.search(str(err))
            best = close[0] if close else (m.group(1) if m else None)
            hint = f" Did you mean {best!r}?" if best else ""
    raise ValueError(f"{name}={value!r} is not valid.{hint} Valid values: {', '.join(options)}.")
