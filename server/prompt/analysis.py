"""What Ollama reads out of a template's syntax tree, read the same way.

Ollama decides a model's capabilities and its output parsers by walking the
parsed template: which identifiers it mentions (`.Messages`, `.Tools`,
`.Suffix`), the text that opens the `{{ if .ToolCalls }}` branch (the
tool-call tag), the text around `.Thinking` inside `range .Messages` (the
thinking tags), and where `{{ .Response }}` sits (legacy templates are cut
there). These functions port those walks (template.Identifiers,
tools.parseTag, thinking.InferTags, template.deleteNode) onto gotpl's nodes,
keeping their quirks: a walk that Ollama does not make into some construct is
not made here either.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from gotpl.parse.nodes import (
    ActionNode,
    BlockNode,
    CommandNode,
    FieldNode,
    IfNode,
    ListNode,
    ParenthesizedNode,
    ParsedTemplate,
    PipeNode,
    RangeNode,
    TemplateCallNode,
    TextNode,
    VariableNode,
    WithNode,
)

_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def go_trim_space(text: str) -> str:
    """strings.TrimSpace (Go's notion of white space, not Python's)."""
    return text.strip(_GO_SPACE)


def go_trim_left_space(text: str) -> str:
    return text.lstrip(_GO_SPACE)


# ------------------------------------------------------------- identifiers


def identifiers(tree: ParsedTemplate) -> frozenset[str]:
    """template.Vars(): every field/variable name, lower-cased."""
    names: list[str] = []
    for node in tree.root.nodes:
        names.extend(_identifiers(node))
    for definition in tree.definitions:
        for node in definition.body.nodes:
            names.extend(_identifiers(node))
    return frozenset(n.lower() for n in names)


def _identifiers(node: object) -> Iterator[str]:
    if isinstance(node, ListNode):
        for child in node.nodes:
            yield from _identifiers(child)
    elif isinstance(node, (ActionNode,)):
        yield from _identifiers(node.pipeline)
    elif isinstance(node, (TemplateCallNode,)):
        if node.pipeline is not None:
            yield from _identifiers(node.pipeline)
    elif isinstance(node, BlockNode):
        yield from _identifiers(node.pipeline)
    elif isinstance(node, (IfNode, RangeNode, WithNode)):
        yield from _identifiers(node.pipeline)
        yield from _identifiers(node.body)
        if node.else_body is not None:
            yield from _identifiers(node.else_body)
    elif isinstance(node, PipeNode):
        for command in node.commands:
            for argument in command.arguments:
                yield from _identifiers(argument)
    elif isinstance(node, FieldNode):
        yield from node.fields
    elif isinstance(node, VariableNode):
        yield node.name
        yield from node.fields
    elif isinstance(node, ParenthesizedNode):
        # Go parses `(pipe)` as a PipeNode (walked) but `(pipe).Field` as a
        # ChainNode, which Identifiers does not look into.
        if not node.fields:
            yield from _identifiers(node.pipeline)


# --------------------------------------------------------- tool-call tag


def _is_tool_calls_if(node: IfNode) -> bool:
    return any(
        isinstance(arg, FieldNode) and "ToolCalls" in arg.fields
        for command in node.pipeline.commands
        for arg in command.arguments
    )


def _find_tool_call_if(nodes: Sequence[object]) -> IfNode | None:
    for node in nodes:
        if isinstance(node, IfNode):
            if _is_tool_calls_if(node):
                return node
            found = _find_tool_call_if(node.body.nodes)
            if found is None and node.else_body is not None:
                found = _find_tool_call_if(node.else_body.nodes)
            if found is not None:
                return found
        elif isinstance(node, ListNode):
            found = _find_tool_call_if(node.nodes)
            if found is not None:
                return found
        elif isinstance(node, (RangeNode, WithNode)):
            found = _find_tool_call_if(node.body.nodes)
            if found is None and node.else_body is not None:
                found = _find_tool_call_if(node.else_body.nodes)
            if found is not None:
                return found
    return None


def _find_text(nodes: Sequence[object]) -> TextNode | None:
    for node in nodes:
        if isinstance(node, TextNode):
            if go_trim_space(node.text) == "":
                continue
            return node
        if isinstance(node, (IfNode, RangeNode, WithNode)):
            found = _find_text(node.body.nodes)
            if found is None and node.else_body is not None:
                found = _find_text(node.else_body.nodes)
            return found
        if isinstance(node, ListNode):
            found = _find_text(node.nodes)
            if found is not None:
                return found
        elif isinstance(node, ActionNode):
            return None
    return None


def tool_call_tag(tree: ParsedTemplate) -> str:
    """tools.parseTag: the text that opens the `.ToolCalls` branch, or "{"."""
    branch = _find_tool_call_if(tree.root.nodes)
    if branch is None:
        return "{"
    text = _find_text(branch.body.nodes)
    if text is None:
        return "{"
    tag = text.text.replace("\r\n", "\n").split("{", 1)[0]
    tag = go_trim_space(tag)
    return tag or "{"


# --------------------------------------------------------- thinking tags


def thinking_tags(tree: ParsedTemplate) -> tuple[str, str]:
    """thinking.InferTags: text nodes around `.Thinking` in `range .Messages`.

    Returns ("", "") when the template shows no thinking.
    """
    state = {"open": "", "close": ""}
    ancestors: list[object] = []

    def visit(node: object) -> None:
        ancestors.append(node)
        if isinstance(node, FieldNode) and node.fields and node.fields[0] == "Thinking":
            _on_thinking(ancestors, state)
        for child in _children(node):
            visit(child)
        ancestors.pop()

    visit(tree.root)
    return state["open"], state["close"]


def _on_thinking(ancestors: list[object], state: dict[str, str]) -> None:
    nearest_range = next((a for a in reversed(ancestors) if isinstance(a, RangeNode)), None)
    if nearest_range is None or not _pipe_uses_field(nearest_range.pipeline, "Messages"):
        return
    for ancestor in reversed(ancestors):
        if isinstance(ancestor, ListNode):
            if not ancestor.nodes:
                return
            first, last = ancestor.nodes[0], ancestor.nodes[-1]
            if isinstance(first, TextNode):
                state["open"] = go_trim_space(first.text)
            if isinstance(last, TextNode):
                state["close"] = go_trim_space(last.text)
            return


def _pipe_uses_field(pipe: PipeNode, name: str) -> bool:
    found = False

    def visit(node: object) -> None:
        nonlocal found
        if isinstance(node, FieldNode) and node.fields and node.fields[0] == name:
            found = True
        for child in _children(node):
            visit(child)

    visit(pipe)
    return found


def _children(node: object) -> Sequence[object]:
    """thinking.templateVisit's notion of children."""
    if isinstance(node, ListNode):
        return node.nodes
    if isinstance(node, (IfNode, RangeNode, WithNode)):
        out: list[object] = [node.pipeline, node.body]
        if node.else_body is not None:
            out.append(node.else_body)
        return out
    if isinstance(node, ActionNode):
        return (node.pipeline,)
    if isinstance(node, TemplateCallNode):
        return (node.pipeline,) if node.pipeline is not None else ()
    if isinstance(node, PipeNode):
        return node.commands
    if isinstance(node, CommandNode):
        return node.arguments
    if isinstance(node, ParenthesizedNode) and not node.fields:
        return (node.pipeline,)
    return ()


# ------------------------------------------------------------ legacy cut


@dataclass(frozen=True, slots=True)
class _Cut:
    position: int
    closers: str


_ELSE_RE = re.compile(r"\{\{-?\s*else\b")


def response_cut(source: str, tree: ParsedTemplate) -> str | None:
    """Source of the template cut right after the first `{{ .Response }}`.

    Ollama's deleteNode keeps everything up to the first `.Response` field
    met inside an action (walking lists, branch bodies and action pipelines,
    never branch conditions) and drops every node after it. The same result
    is had here by cutting the source after that field and closing what is
    left open (parentheses, the action, enclosing `if`/`range`/`with`).
    Returns None when the template has no such field (nothing is cut).
    """
    cut = _search_list(source, tree.root, [])
    if cut is None:
        return None
    return source[: cut.position] + cut.closers


def _search_list(source: str, node: ListNode, path: list[object]) -> _Cut | None:
    for child in node.nodes:
        found = _search_node(source, child, path)
        if found is not None:
            return found
    return None


def _search_node(source: str, node: object, path: list[object]) -> _Cut | None:
    if isinstance(node, (IfNode, RangeNode, WithNode)):
        inner = [*path, node]
        found = _search_list(source, node.body, inner)
        if found is None and node.else_body is not None:
            found = _search_list(source, node.else_body, inner)
        if found is None:
            return None
        chained = isinstance(node, (IfNode, WithNode)) and _ELSE_RE.match(source, node.start) is not None
        return _Cut(found.position, found.closers + ("" if chained else "{{end}}"))
    if isinstance(node, ActionNode):
        found = _search_pipe(node.pipeline)
        if found is None:
            return None
        return _Cut(found.position, found.closers + "}}")
    return None


def _search_pipe(pipe: PipeNode) -> _Cut | None:
    for command in pipe.commands:
        for argument in command.arguments:
            if isinstance(argument, FieldNode) and "Response" in argument.fields:
                return _Cut(argument.end, "")
            if isinstance(argument, ParenthesizedNode) and not argument.fields:
                found = _search_pipe(argument.pipeline)
                if found is not None:
                    return _Cut(found.position, found.closers + ")")
    return None
