"""Tokenizer for DynamoDB expressions (condition, filter, key condition, update, projection)."""

from __future__ import annotations

NAME = "name"  # identifier or keyword (keywords are recognized by the parser, case-insensitively)
ATTR_NAME = "#"  # expression attribute name placeholder
ATTR_VALUE = ":"  # expression attribute value placeholder
INT = "int"  # list index
OP = "op"  # punctuation and comparators
BAD = "bad"  # a character no rule accepts: a syntax error wherever the parser meets it
EOF = "eof"

_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_DIGITS = frozenset("0123456789")
_WS = frozenset(" \t\r\n")
_TWO = ("<=", ">=", "<>")
_ONE = frozenset("()[].,=<>+-")


class Lexeme:
    __slots__ = ("kind", "text", "start", "end")

    def __init__(self, kind: str, text: str, start: int, end: int) -> None:
        self.kind = kind
        self.text = text
        self.start = start
        self.end = end

    def is_word(self, word: str) -> bool:
        return self.kind == NAME and self.text.upper() == word

    def __repr__(self) -> str:
        return f"Lexeme({self.kind}, {self.text!r})"


def tokenize(text: str) -> list[Lexeme]:
    """Split an expression into tokens; always ends with an EOF token."""
    tokens: list[Lexeme] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _WS:
            i += 1
            continue
        start = i
        if c in _DIGITS:
            while i < n and text[i] in _DIGITS:
                i += 1
            # "1a" is one malformed word for DynamoDB, not an index followed by a name.
            if i < n and text[i] in _WORD_CHARS:
                while i < n and text[i] in _WORD_CHARS:
                    i += 1
                tokens.append(Lexeme(BAD, text[start:i], start, i))
            else:
                tokens.append(Lexeme(INT, text[start:i], start, i))
        elif c in _WORD_CHARS:
            while i < n and text[i] in _WORD_CHARS:
                i += 1
            tokens.append(Lexeme(NAME, text[start:i], start, i))
        elif c == "#" or c == ":":
            i += 1
            while i < n and text[i] in _WORD_CHARS:
                i += 1
            kind = (ATTR_NAME if c == "#" else ATTR_VALUE) if i - start > 1 else BAD
            tokens.append(Lexeme(kind, text[start:i], start, i))
        elif text.startswith(_TWO, i):
            i += 2
            tokens.append(Lexeme(OP, text[start:i], start, i))
        elif c in _ONE:
            i += 1
            tokens.append(Lexeme(OP, c, start, i))
        else:
            i += 1
            tokens.append(Lexeme(BAD, c, start, i))
    tokens.append(Lexeme(EOF, "<EOF>", n, n))
    return tokens
