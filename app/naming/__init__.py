"""Title and branch names for a new session.

`make_namer(settings)` gives the namer of the process: `AnthropicNamer`, which asks Anthropic's
Messages API, when ANTHROPIC_API_KEY is set, else `LocalNamer`, which is deterministic, needs no
network and is also the Anthropic namer's fallback. Either way the names follow the rules in
`app.naming.names`: a one-line title of at most 80 characters, a branch git accepts.
"""

from app.naming.factory import make_namer
from app.naming.local import LocalNamer
from app.naming.names import (
    BRANCH_MAX,
    MESSAGE_TEXT_MAX,
    TITLE_MAX,
    Namer,
    Names,
    clean_title,
    is_valid_branch,
    is_valid_title,
    message_text,
    slugify,
    with_prefix,
    with_suffix,
)

__all__ = [
    "BRANCH_MAX",
    "MESSAGE_TEXT_MAX",
    "TITLE_MAX",
    "LocalNamer",
    "Namer",
    "Names",
    "clean_title",
    "is_valid_branch",
    "is_valid_title",
    "make_namer",
    "message_text",
    "slugify",
    "with_prefix",
    "with_suffix",
]
