"""An Ollama Modelfile for an exported GGUF: FROM, TEMPLATE, PARAMETER stop.

Ollama templates are Go templates, not Jinja, so the model's chat template is
not copied but measured: it is rendered with marker messages to learn the text
around each role's content, and that is written as a Go template over
`.Messages`. The result is rendered back in Python and must equal the Jinja
rendering of a sample conversation, else the Modelfile falls back to the raw
prompt (which is also what a base model without a chat template gets: it
continues the text it is given).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

_SYS, _U1, _A1, _U2 = "QQSYSTEMQQ", "QQUSERONEQQ", "QQASSISTANTONEQQ", "QQUSERTWOQQ"
RAW_TEMPLATE = "{{ .Prompt }}"


@dataclass
class ChatFormat:
    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    assistant_suffix: str
    system_prefix: Optional[str] = None  # None: the template has no separate system turn
    system_suffix: Optional[str] = None

    def render(self, messages: list[dict]) -> str:
        """What the Go template below produces for `messages` (+ the assistant's turn start)."""
        out = []
        for m in messages:
            if m["role"] == "system" and self.system_prefix is not None:
                out.append(self.system_prefix + m["content"] + self.system_suffix)
            elif m["role"] == "user":
                out.append(self.user_prefix + m["content"] + self.user_suffix)
            elif m["role"] == "assistant":
                out.append(self.assistant_prefix + m["content"] + self.assistant_suffix)
        return "".join(out) + self.assistant_prefix

    def go_template(self) -> str:
        # One line, no {{- trimming: the literal newlines around the roles must survive.
        branches = []
        if self.system_prefix is not None:
            branches.append(f'{{{{ if eq .Role "system" }}}}{self.system_prefix}{{{{ .Content }}}}{self.system_suffix}')
        branches.append(f'{{{{ {"else if" if branches else "if"} eq .Role "user" }}}}'
                        f'{self.user_prefix}{{{{ .Content }}}}{self.user_suffix}')
        branches.append(f'{{{{ else if eq .Role "assistant" }}}}'
                        f'{self.assistant_prefix}{{{{ .Content }}}}{self.assistant_suffix}')
        return "{{ range .Messages }}" + "".join(branches) + "{{ end }}{{ end }}" + self.assistant_prefix


def _render(tokenizer, messages: list[dict], generation: bool) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    bos = tokenizer.bos_token
    return text[len(bos):] if bos and text.startswith(bos) else text  # llama.cpp adds BOS itself


def _between(text: str, start: str, end: Optional[str]) -> str:
    i = text.index(start) + len(start)
    return text[i:text.index(end, i)] if end else text[i:]


def chat_format(tokenizer) -> Optional[ChatFormat]:
    """The chat template as prefix/suffix text per role, or None when it cannot be expressed so."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    try:
        conv = [{"role": "user", "content": _U1}, {"role": "assistant", "content": _A1},
                {"role": "user", "content": _U2}]
        full = _render(tokenizer, conv, True)
        user_prefix = full[:full.index(_U1)]
        after_u1 = _between(full, _U1, _A1)  # user suffix + assistant prefix
        after_a1 = _between(full, _A1, _U2)  # assistant suffix + user prefix
        tail = _between(full, _U2, None)  # user suffix + assistant prefix (generation prompt)
        if not after_a1.endswith(user_prefix) or after_u1 != tail:
            return None
        assistant_suffix = after_a1[:len(after_a1) - len(user_prefix)]
        one = _render(tokenizer, [{"role": "user", "content": _U1}], False)
        user_suffix = _between(one, _U1, None)
        if not after_u1.startswith(user_suffix):
            return None
        fmt = ChatFormat(user_prefix, user_suffix, after_u1[len(user_suffix):], assistant_suffix)
    except Exception:  # the template raised, or markers went missing (it rewrote the content)
        return None
    if fmt.render(conv) != full:
        return None
    try:  # a separate system turn, if the template has one that fits the same shape
        with_sys = _render(tokenizer, [{"role": "system", "content": _SYS}] + conv, True)
        head = with_sys[:with_sys.index(_U1) - len(user_prefix)]
        sys_prefix = head[:head.index(_SYS)]
        sys_suffix = head[head.index(_SYS) + len(_SYS):]
        candidate = ChatFormat(**{**fmt.__dict__, "system_prefix": sys_prefix, "system_suffix": sys_suffix})
        if candidate.render([{"role": "system", "content": _SYS}] + conv) == with_sys:
            fmt = candidate
    except Exception:
        pass
    return fmt


def _literal_safe(fmt: ChatFormat) -> bool:
    """Role texts must not contain Go template delimiters or the Modelfile's triple quote."""
    pieces = [v for v in fmt.__dict__.values() if v]
    return not any(bad in p for p in pieces for bad in ("{{", "}}", '"""'))


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def modelfile(gguf_name: str, tokenizer, title: str) -> tuple[str, dict]:
    """The Modelfile text and a summary (template kind, stop strings)."""
    fmt = chat_format(tokenizer)
    stops: list[str] = []
    if fmt is not None and _literal_safe(fmt):
        template, kind = fmt.go_template(), "chat"
        end_of_turn = fmt.assistant_suffix.strip()
        if end_of_turn:
            stops.append(end_of_turn)
    else:
        template = RAW_TEMPLATE
        kind = "raw" if not getattr(tokenizer, "chat_template", None) else "raw (chat template not expressible)"
    eos = tokenizer.eos_token
    if eos and eos not in stops:
        stops.append(eos)
    lines = [
        f"# Ollama Modelfile for {title}, exported by Inkstone.",
        f"# ollama create {Path(gguf_name).stem.lower()} -f Modelfile",
        f"FROM ./{gguf_name}",
        f'TEMPLATE """{template}"""',
    ]
    if kind != "chat":
        lines.insert(3, "# No chat template: the model continues the prompt text as given.")
    lines += [f'PARAMETER stop "{_quote(s)}"' for s in stops]
    return "\n".join(lines) + "\n", {"template": kind, "stop": stops}
