"""Text helpers shared by the corpus, the index and the answers."""
from __future__ import annotations

import re

#: ``snake_case``, ``dotted.name``, ``path/like`` or ``camelCase``/``PascalCase`` (from its first letter).
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[_.\-/][A-Za-z0-9]+)+|[A-Za-z][a-z0-9]*[A-Z][A-Za-z0-9]*")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

#: Questions longer than this are refused (a pasted log is not a question; retrieval degrades).
MAX_QUESTION_CHARS = 2000

#: Small English stop list for the key-term extraction of follow-up questions.
STOPWORDS = frozenset(
    """a an and are as at be but by can could do does did for from how i in into is it its me my
    of on or please should so that the their them then there these this those to use using was
    we what when where which who why will with would you your yours i'd i'm it's what's how's
    want need get make way show tell give let about have has any some our us""".split()
)


def split_identifier(word: str) -> list[str]:
    """``create_session`` / ``createSession`` / ``cuda.shares`` → their parts, lower-cased."""
    parts = re.split(r"[_.\-/]+", word)
    out: list[str] = []
    for part in parts:
        out.extend(p.lower() for p in _CAMEL.split(part) if p)
    return out


def expand_identifiers(text: str) -> str:
    """Append the words inside identifiers so lexical search finds "create session"."""
    extra: list[str] = []
    for match in _IDENT.finditer(text):
        words = split_identifier(match.group(0))
        if len(words) > 1:
            extra.append(" ".join(words))
    return text if not extra else text + "\n" + " ".join(extra)


def words(text: str) -> list[str]:
    """Lower-case word tokens (identifiers split)."""
    out: list[str] = []
    for tok in re.findall(r"[A-Za-z0-9_.\-]+", text):
        out.extend(w for w in split_identifier(tok) if w)
    return out


def key_terms(text: str) -> list[str]:
    """Content words of a question, in order, without duplicates or stop words."""
    seen: dict[str, None] = {}
    for w in words(text):
        if len(w) > 1 and w not in STOPWORDS:
            seen.setdefault(w, None)
    return list(seen)


#: The platform's own words and the everyday words people use for them (Backend.AI's glossary).
#: Documents are expanded with these so "kill my container" finds "destroy session"; the list is
#: about the platform's vocabulary, not about particular questions.
GLOSSARY: dict[str, str] = {
    "session": "container environment workload job kernel instance",
    "sessions": "containers environments workloads jobs",
    "vfolder": "storage folder volume directory virtual folder data",
    "vfolders": "storage folders volumes virtual folders",
    "folder": "storage directory volume",
    "create": "new start launch make spin up add",
    "destroy": "terminate stop kill remove shut down end delete",
    "terminate": "stop kill end",
    "delete": "remove erase destroy drop",
    "list": "show which what all browse enumerate",
    "logs": "output printed stdout stderr console tail",
    "log": "output printed stdout",
    "upload": "copy put send transfer push local laptop",
    "download": "fetch get retrieve pull save local computer",
    "exec": "execute shell command terminal",
    "run": "execute evaluate",
    "interrupt": "cancel abort stop ctrl-c keyboardinterrupt halt",
    "resources": "capacity hardware free available usage cpu memory gpu",
    "cuda.shares": "fraction fractional half quarter partial share fgpu gpu graphics card",
    "gpu": "graphics card cuda accelerator",
    "mem": "memory ram",
    "quota": "size limit space usage",
    "move": "rename relocate",
    "mkdir": "make directory subdirectory subfolder nested",
    "events": "notifications notify subscribe live updates changes watch stream",
    "openapi": "api description specification schema spec machine-readable",
    "assistant": "helper question answer ask docs documentation knowledge",
    "learn": "teach add index",
    "forget": "unlearn remove drop",
    "sources": "documents indexed learned",
    "status": "state",
}


def glossary_terms(text: str) -> str:
    """Everyday words for the platform terms that occur in ``text`` (see :data:`GLOSSARY`)."""
    found = set(words(text)) | {m.lower() for m in re.findall(r"cuda\.shares", text)}
    return " ".join(v for k, v in GLOSSARY.items() if k in found)
