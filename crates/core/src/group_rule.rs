//! Dynamic group rules: a small expression language over device attributes.
//!
//! A rule such as `os == "linux" and tag("finance") and not tag("lab")` is
//! parsed once, when a group is created or loaded, into a [`GroupRule`]; after
//! that, matching a device cannot fail. Every mistake an administrator can make
//! is reported at parse time with the column where it starts, so a typo such as
//! `os == "linx"` is refused instead of silently matching no device.
//!
//! Grammar (keywords are lowercase; whitespace is free between tokens):
//!
//! ```text
//! rule       := or END
//! or         := and ("or" and)*
//! and        := unary ("and" unary)*
//! unary      := "not" unary | primary
//! primary    := "(" or ")" | "true" | "false" | "tag" "(" STRING ")" | comparison
//! comparison := FIELD OP STRING | FIELD ("in" | "not" "in") list
//! list       := "[" STRING ("," STRING)* ","? "]"
//! FIELD      := os | os_version | type | name | tags
//! OP         := == | != | ~ | < | <= | > | >=
//! STRING     := '"' (any character, or \" or \\)* '"'
//! ```

use std::cmp::Ordering;
use std::fmt;

use crate::model::{Device, DeviceType, Platform};

/// How deeply parentheses and `not` may nest. Parsing, matching and dropping a
/// rule all recurse once per level, so a hostile `((((…` must stop here rather
/// than overflow the stack.
const MAX_DEPTH: usize = 64;

/// A parsed group rule, kept with its source text.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRule {
    source: String,
    expr: Expr,
}

/// A syntax error with its 1-based column (in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSyntaxError {
    pub column: usize,
    pub message: String,
}

impl fmt::Display for RuleSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for RuleSyntaxError {}

impl GroupRule {
    /// Parses a rule; the error names the first problem and its column.
    pub fn parse(text: &str) -> Result<GroupRule, RuleSyntaxError> {
        if text.trim().is_empty() {
            return Err(error(
                1,
                "empty rule: write a condition such as os == \"linux\"",
            ));
        }
        let mut parser = Parser::new(text);
        let expr = parser.parse_or()?;
        let next = parser.bump()?;
        match next.kind {
            Kind::End => {}
            Kind::RParen => {
                return Err(error(next.column, "unmatched `)`"));
            }
            _ => {
                return Err(error(
                    next.column,
                    format!(
                        "unexpected {} after a complete condition; expected `and`, `or` or the end of the rule",
                        next.kind.describe()
                    ),
                ));
            }
        }
        Ok(GroupRule {
            source: text.to_string(),
            expr,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, device: &Device) -> bool {
        self.expr.matches(device)
    }
}

fn error(column: usize, message: impl Into<String>) -> RuleSyntaxError {
    RuleSyntaxError {
        column,
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------
// Syntax tree and evaluation
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Const(bool),
    Not(Box<Expr>),
    /// `a and b and c` is kept flat, not as nested pairs, so a long chain
    /// does not become a deep tree that recursion could overflow on.
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Test(Test),
}

/// One condition on a device. Negated operators (`!=`, `not in`) are stored as
/// `Expr::Not` around the positive test, so each test has one meaning.
#[derive(Debug, Clone, PartialEq)]
enum Test {
    OsIn(Vec<Platform>),
    TypeIn(Vec<DeviceType>),
    NameIn(Vec<String>),
    NameLike(Glob),
    VersionIn(Vec<String>),
    VersionLike(Glob),
    VersionCmp(Cmp, String),
    HasAnyTag(Vec<String>),
    AnyTagLike(Glob),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Expr {
    fn matches(&self, device: &Device) -> bool {
        match self {
            Expr::Const(value) => *value,
            Expr::Not(inner) => !inner.matches(device),
            Expr::All(terms) => terms.iter().all(|t| t.matches(device)),
            Expr::Any(terms) => terms.iter().any(|t| t.matches(device)),
            Expr::Test(test) => test.matches(device),
        }
    }
}

impl Test {
    fn matches(&self, device: &Device) -> bool {
        match self {
            Test::OsIn(values) => values.contains(&device.os),
            Test::TypeIn(values) => values.contains(&device.device_type),
            // Host names are case-insensitive (DNS), so `WEB-01` is `web-01`.
            Test::NameIn(values) => values.iter().any(|v| v.eq_ignore_ascii_case(&device.name)),
            Test::NameLike(glob) => glob.matches(&device.name),
            Test::VersionIn(values) => values
                .iter()
                .any(|v| compare_versions(&device.os_version, v) == Ordering::Equal),
            Test::VersionLike(glob) => glob.matches(device.os_version.trim()),
            Test::VersionCmp(cmp, value) => {
                // An unknown version is neither old nor new: a device that has
                // not reported one must not land in "older than 10" groups.
                if device.os_version.trim().is_empty() {
                    return false;
                }
                let ordering = compare_versions(&device.os_version, value);
                match cmp {
                    Cmp::Lt => ordering == Ordering::Less,
                    Cmp::Le => ordering != Ordering::Greater,
                    Cmp::Gt => ordering == Ordering::Greater,
                    Cmp::Ge => ordering != Ordering::Less,
                }
            }
            Test::HasAnyTag(tags) => tags.iter().any(|t| device.has_tag(t)),
            Test::AnyTagLike(glob) => device.tags.iter().any(|t| glob.matches(t)),
        }
    }
}

/// Compares versions segment by segment, splitting on `.` and `-`: two numeric
/// segments compare as numbers (`22.10` > `22.9`, `22.04` == `22.4`), anything
/// else compares as ASCII-case-insensitive text. A missing segment counts as
/// `0`, so `10` == `10.0`.
fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut left = a.trim().split(['.', '-']);
    let mut right = b.trim().split(['.', '-']);
    loop {
        let (x, y) = match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (x, y) => (x.unwrap_or("0"), y.unwrap_or("0")),
        };
        let ordering = compare_segments(x, y);
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
}

fn compare_segments(x: &str, y: &str) -> Ordering {
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if numeric(x) && numeric(y) {
        // Compared as digit strings rather than parsed into an integer, so a
        // 30-digit build number cannot overflow.
        let x = x.trim_start_matches('0');
        let y = y.trim_start_matches('0');
        x.len().cmp(&y.len()).then_with(|| x.cmp(y))
    } else {
        let lower = |s: &str| {
            s.bytes()
                .map(|b| b.to_ascii_lowercase())
                .collect::<Vec<u8>>()
        };
        lower(x).cmp(&lower(y))
    }
}

/// A `~` pattern: `*` matches any run of characters, `?` exactly one; the rest
/// matches itself, ignoring ASCII case.
#[derive(Debug, Clone, PartialEq)]
struct Glob(Vec<char>);

impl Glob {
    fn matches(&self, text: &str) -> bool {
        let pattern = &self.0;
        let text: Vec<char> = text.chars().collect();
        let (mut p, mut t) = (0, 0);
        // Where the last `*` was and the text position it is trying to cover
        // up to; on a mismatch the star swallows one more character. Only the
        // last star ever needs to backtrack, which keeps this O(n·m).
        let mut star: Option<(usize, usize)> = None;
        while let Some(&c) = text.get(t) {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(&q) if q == '?' || q.eq_ignore_ascii_case(&c) => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((star_p, star_t)) => {
                        p = star_p + 1;
                        t = star_t + 1;
                        star = Some((star_p, star_t + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern.iter().skip(p).all(|&q| q == '*')
    }
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// A word: field, keyword or function name.
    Ident(String),
    /// An unquoted number-like word (`22.04`), kept only to suggest quoting it.
    Bare(String),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Op(Op),
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Like,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Like => "~",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

impl Kind {
    /// How the token is named in error messages.
    fn describe(&self) -> String {
        match self {
            Kind::Ident(word) | Kind::Bare(word) => format!("`{word}`"),
            Kind::Str(value) => format!("string {value:?}"),
            Kind::LParen => "`(`".to_string(),
            Kind::RParen => "`)`".to_string(),
            Kind::LBracket => "`[`".to_string(),
            Kind::RBracket => "`]`".to_string(),
            Kind::Comma => "`,`".to_string(),
            Kind::Op(op) => format!("`{}`", op.symbol()),
            Kind::End => "the end of the rule".to_string(),
        }
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self, Kind::Ident(w) if w == word)
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    kind: Kind,
    /// 1-based character column of the token's first character.
    column: usize,
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Os,
    OsVersion,
    Type,
    Name,
    Tags,
}

const FIELD_NAMES: &str = "os, os_version, type, name, tags";

impl Field {
    fn from_name(word: &str) -> Option<Field> {
        match word {
            "os" => Some(Field::Os),
            "os_version" => Some(Field::OsVersion),
            "type" => Some(Field::Type),
            "name" => Some(Field::Name),
            "tags" => Some(Field::Tags),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Field::Os => "os",
            Field::OsVersion => "os_version",
            Field::Type => "type",
            Field::Name => "name",
            Field::Tags => "tags",
        }
    }

    fn allows(self, op: CompOp) -> bool {
        match op {
            CompOp::Op(Op::Eq | Op::Ne) | CompOp::In | CompOp::NotIn => true,
            CompOp::Op(Op::Like) => !matches!(self, Field::Os | Field::Type),
            CompOp::Op(Op::Lt | Op::Le | Op::Gt | Op::Ge) => self == Field::OsVersion,
        }
    }

    /// The operators this field accepts, for error messages.
    fn operators(self) -> &'static str {
        match self {
            Field::Os | Field::Type => "==, !=, in, not in",
            Field::Name | Field::Tags => "==, !=, in, not in, ~",
            Field::OsVersion => "==, !=, in, not in, ~, <, <=, >, >=",
        }
    }
}

/// A comparison operator, including the word operators `in` and `not in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CompOp {
    Op(Op),
    In,
    NotIn,
}

impl CompOp {
    fn symbol(self) -> &'static str {
        match self {
            CompOp::Op(op) => op.symbol(),
            CompOp::In => "in",
            CompOp::NotIn => "not in",
        }
    }
}

const KEYWORDS: [&str; 6] = ["and", "or", "not", "in", "true", "false"];

/// A string literal and the column of its opening quote, so that a bad value
/// (an unknown os, an empty tag) is reported where it is written.
struct Literal {
    value: String,
    column: usize,
}

/// Lexes on demand, one token ahead, so the first error reported is the
/// leftmost one even when a later token could not be lexed.
struct Parser {
    chars: Vec<char>,
    pos: usize,
    peeked: Option<Token>,
    depth: usize,
}

impl Parser {
    fn new(text: &str) -> Parser {
        Parser {
            chars: text.chars().collect(),
            pos: 0,
            peeked: None,
            depth: 0,
        }
    }

    fn peek(&mut self) -> Result<&Token, RuleSyntaxError> {
        if self.peeked.is_none() {
            let token = self.lex()?;
            self.peeked = Some(token);
        }
        match &self.peeked {
            Some(token) => Ok(token),
            // Filled just above; this arm only satisfies the type checker.
            None => Err(error(self.pos + 1, "internal error: no token")),
        }
    }

    fn bump(&mut self) -> Result<Token, RuleSyntaxError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lex(),
        }
    }

    fn lex(&mut self) -> Result<Token, RuleSyntaxError> {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
        let column = self.pos + 1;
        let Some(&c) = self.chars.get(self.pos) else {
            return Ok(Token {
                kind: Kind::End,
                column,
            });
        };
        let next = self.chars.get(self.pos + 1).copied();
        let (kind, width) = match (c, next) {
            ('(', _) => (Kind::LParen, 1),
            (')', _) => (Kind::RParen, 1),
            ('[', _) => (Kind::LBracket, 1),
            (']', _) => (Kind::RBracket, 1),
            (',', _) => (Kind::Comma, 1),
            ('~', _) => (Kind::Op(Op::Like), 1),
            ('=', Some('=')) => (Kind::Op(Op::Eq), 2),
            ('!', Some('=')) => (Kind::Op(Op::Ne), 2),
            ('<', Some('=')) => (Kind::Op(Op::Le), 2),
            ('>', Some('=')) => (Kind::Op(Op::Ge), 2),
            ('<', _) => (Kind::Op(Op::Lt), 1),
            ('>', _) => (Kind::Op(Op::Gt), 1),
            ('=', _) => {
                return Err(error(column, "`=` is not an operator; use `==` to compare"));
            }
            ('!', _) => {
                return Err(error(
                    column,
                    "unexpected `!`; use `not` to negate or `!=` to compare",
                ));
            }
            ('&', Some('&')) => return Err(error(column, "use `and` instead of `&&`")),
            ('|', Some('|')) => return Err(error(column, "use `or` instead of `||`")),
            ('\'', _) => {
                return Err(error(
                    column,
                    "strings are written in double quotes (\"...\"), not single quotes",
                ));
            }
            ('"', _) => return self.lex_string(column),
            (c, _) if c.is_ascii_alphabetic() || c == '_' => {
                let word = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
                return Ok(Token {
                    kind: Kind::Ident(word),
                    column,
                });
            }
            (c, _) if c.is_ascii_digit() => {
                let word =
                    self.take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
                return Ok(Token {
                    kind: Kind::Bare(word),
                    column,
                });
            }
            (c, _) => return Err(error(column, format!("unexpected character {c:?}"))),
        };
        self.pos += width;
        Ok(Token { kind, column })
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.chars.get(self.pos).is_some_and(|&c| keep(c)) {
            self.pos += 1;
        }
        self.chars
            .get(start..self.pos)
            .unwrap_or_default()
            .iter()
            .collect()
    }

    /// Lexes a string whose opening quote is at `column`.
    fn lex_string(&mut self, column: usize) -> Result<Token, RuleSyntaxError> {
        self.pos += 1;
        let mut value = String::new();
        loop {
            let Some(&c) = self.chars.get(self.pos) else {
                return Err(error(column, "unterminated string: missing closing `\"`"));
            };
            self.pos += 1;
            match c {
                '"' => {
                    return Ok(Token {
                        kind: Kind::Str(value),
                        column,
                    });
                }
                '\\' => match self.chars.get(self.pos) {
                    Some(&escaped @ ('"' | '\\')) => {
                        value.push(escaped);
                        self.pos += 1;
                    }
                    Some(&other) => {
                        return Err(error(
                            self.pos,
                            format!("unknown escape `\\{other}`; only `\\\"` and `\\\\` are allowed in strings"),
                        ));
                    }
                    None => {
                        return Err(error(column, "unterminated string: missing closing `\"`"));
                    }
                },
                c => value.push(c),
            }
        }
    }

    /// Enters one level of nesting at `column` (a `(` or a `not`).
    fn enter(&mut self, column: usize) -> Result<(), RuleSyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(error(
                column,
                format!("rule nests too deeply (more than {MAX_DEPTH} levels of `(` and `not`)"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn parse_or(&mut self) -> Result<Expr, RuleSyntaxError> {
        let first = self.parse_and()?;
        let mut rest = Vec::new();
        while self.peek()?.kind.is_word("or") {
            self.bump()?;
            rest.push(self.parse_and()?);
        }
        Ok(join(first, rest, Expr::Any))
    }

    fn parse_and(&mut self) -> Result<Expr, RuleSyntaxError> {
        let first = self.parse_unary()?;
        let mut rest = Vec::new();
        while self.peek()?.kind.is_word("and") {
            self.bump()?;
            rest.push(self.parse_unary()?);
        }
        Ok(join(first, rest, Expr::All))
    }

    fn parse_unary(&mut self) -> Result<Expr, RuleSyntaxError> {
        let token = self.peek()?;
        if token.kind.is_word("not") {
            let column = token.column;
            self.bump()?;
            self.enter(column)?;
            let inner = self.parse_unary()?;
            self.leave();
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.parse_primary()
    }

    fn parse_primary(&mut self) -> Result<Expr, RuleSyntaxError> {
        let token = self.bump()?;
        let column = token.column;
        match token.kind {
            Kind::LParen => {
                self.enter(column)?;
                let inner = self.parse_or()?;
                let close = self.bump()?;
                if close.kind != Kind::RParen {
                    return Err(error(
                        close.column,
                        format!(
                            "missing `)` to close the `(` at column {column}; found {}",
                            close.kind.describe()
                        ),
                    ));
                }
                self.leave();
                Ok(inner)
            }
            Kind::Ident(word) => match word.as_str() {
                "true" => Ok(Expr::Const(true)),
                "false" => Ok(Expr::Const(false)),
                "tag" => self.parse_tag_call(column),
                _ => match Field::from_name(&word) {
                    Some(field) => self.parse_comparison(field),
                    None => Err(self.unknown_word(&word, column)),
                },
            },
            Kind::Str(value) => Err(error(
                column,
                format!(
                    "expected a condition, found string {value:?}; put the field first, as in name == {value:?}"
                ),
            )),
            other => Err(error(
                column,
                format!(
                    "expected a condition (a field such as os, tag(\"...\"), `not` or `(`), found {}",
                    other.describe()
                ),
            )),
        }
    }

    /// The error for a word where a condition should start.
    fn unknown_word(&mut self, word: &str, column: usize) -> RuleSyntaxError {
        if KEYWORDS.contains(&word) {
            return error(
                column,
                format!("expected a condition (a field such as os, tag(\"...\"), `not` or `(`), found `{word}`"),
            );
        }
        let lower = word.to_ascii_lowercase();
        if KEYWORDS.contains(&lower.as_str())
            || Field::from_name(&lower).is_some()
            || lower == "tag"
        {
            return error(
                column,
                format!("unknown word `{word}`; fields and keywords are lowercase: `{lower}`"),
            );
        }
        if matches!(
            self.peek(),
            Ok(Token {
                kind: Kind::LParen,
                ..
            })
        ) {
            return error(
                column,
                format!("unknown function `{word}`; the only function is tag(\"...\")"),
            );
        }
        error(
            column,
            format!("unknown field `{word}`; expected one of {FIELD_NAMES}, or tag(\"...\")"),
        )
    }

    /// `tag("x")`, after the word `tag` at `column`.
    fn parse_tag_call(&mut self, column: usize) -> Result<Expr, RuleSyntaxError> {
        let open = self.bump()?;
        if open.kind != Kind::LParen {
            return Err(error(
                open.column,
                format!(
                    "expected `(` after `tag`, as in tag(\"finance\"); found {}",
                    open.kind.describe()
                ),
            ));
        }
        let tag = self.parse_string("tag(")?;
        check_tag(&tag)?;
        let close = self.bump()?;
        if close.kind != Kind::RParen {
            return Err(error(
                close.column,
                format!(
                    "missing `)` to close tag( at column {column}; found {}",
                    close.kind.describe()
                ),
            ));
        }
        Ok(Expr::Test(Test::HasAnyTag(vec![tag.value])))
    }

    /// A string literal; `after` names what precedes it, for the message.
    fn parse_string(&mut self, after: &str) -> Result<Literal, RuleSyntaxError> {
        let token = self.bump()?;
        match token.kind {
            Kind::Str(value) => Ok(Literal {
                value,
                column: token.column,
            }),
            Kind::Ident(word) | Kind::Bare(word) => Err(error(
                token.column,
                format!("expected a quoted string after `{after}`, found `{word}`; write \"{word}\""),
            )),
            Kind::LBracket => Err(error(
                token.column,
                format!("expected a quoted string after `{after}`, found `[`; use `in [...]` to compare with a list"),
            )),
            other => Err(error(
                token.column,
                format!("expected a quoted string after `{after}`, found {}", other.describe()),
            )),
        }
    }

    /// `[ "a", "b" ]`, after `in` or `not in`.
    fn parse_list(&mut self, after: &str) -> Result<Vec<Literal>, RuleSyntaxError> {
        let open = self.bump()?;
        match open.kind {
            Kind::LBracket => {}
            Kind::Str(value) => {
                return Err(error(
                    open.column,
                    format!("expected a list after `{after}`, found string {value:?}; write [{value:?}] or use `==`"),
                ));
            }
            other => {
                return Err(error(
                    open.column,
                    format!(
                        "expected a list such as [\"a\", \"b\"] after `{after}`, found {}",
                        other.describe()
                    ),
                ));
            }
        }
        let mut items = Vec::new();
        loop {
            let token = self.bump()?;
            match token.kind {
                Kind::RBracket if items.is_empty() => {
                    return Err(error(token.column, "empty list: give at least one value"));
                }
                Kind::RBracket => return Ok(items),
                Kind::Str(value) => items.push(Literal {
                    value,
                    column: token.column,
                }),
                Kind::Ident(word) | Kind::Bare(word) => {
                    return Err(error(
                        token.column,
                        format!("expected a quoted string in the list, found `{word}`; write \"{word}\""),
                    ));
                }
                Kind::End => {
                    return Err(error(
                        token.column,
                        format!("missing `]` to close the `[` at column {}", open.column),
                    ));
                }
                other => {
                    return Err(error(
                        token.column,
                        format!(
                            "expected a quoted string in the list, found {}",
                            other.describe()
                        ),
                    ));
                }
            }
            let separator = self.bump()?;
            match separator.kind {
                Kind::Comma => {}
                Kind::RBracket => return Ok(items),
                other => {
                    return Err(error(
                        separator.column,
                        format!(
                            "missing `]` to close the `[` at column {} (or `,` before the next value); found {}",
                            open.column,
                            other.describe()
                        ),
                    ));
                }
            }
        }
    }

    /// The operator and value after `field`.
    fn parse_comparison(&mut self, field: Field) -> Result<Expr, RuleSyntaxError> {
        let token = self.bump()?;
        let op = match token.kind {
            Kind::Op(op) => CompOp::Op(op),
            Kind::Ident(ref word) if word == "in" => CompOp::In,
            Kind::Ident(ref word) if word == "not" => {
                let next = self.bump()?;
                if !next.kind.is_word("in") {
                    return Err(error(
                        next.column,
                        format!(
                            "expected `in` after `{} not`, found {}",
                            field.name(),
                            next.kind.describe()
                        ),
                    ));
                }
                CompOp::NotIn
            }
            other => {
                return Err(error(
                    token.column,
                    format!(
                        "expected an operator after `{}` (one of {}), found {}",
                        field.name(),
                        field.operators(),
                        other.describe()
                    ),
                ));
            }
        };
        if !field.allows(op) {
            return Err(error(
                token.column,
                format!(
                    "operator `{}` is not allowed for `{}`; use one of {}",
                    op.symbol(),
                    field.name(),
                    field.operators()
                ),
            ));
        }
        let values = match op {
            CompOp::In | CompOp::NotIn => self.parse_list(op.symbol())?,
            CompOp::Op(_) => vec![self.parse_string(op.symbol())?],
        };
        let test = build_test(field, op, values)?;
        Ok(match op {
            CompOp::Op(Op::Ne) | CompOp::NotIn => Expr::Not(Box::new(Expr::Test(test))),
            _ => Expr::Test(test),
        })
    }
}

/// `first` alone, or `first` and `rest` combined by `combine`.
fn join(first: Expr, mut rest: Vec<Expr>, combine: fn(Vec<Expr>) -> Expr) -> Expr {
    if rest.is_empty() {
        first
    } else {
        rest.insert(0, first);
        combine(rest)
    }
}

fn check_tag(tag: &Literal) -> Result<(), RuleSyntaxError> {
    if tag.value.is_empty() {
        return Err(error(tag.column, "a tag cannot be empty"));
    }
    Ok(())
}

/// Checks the values against the field and builds the positive test; the
/// caller wraps it in `not` for `!=` and `not in`.
fn build_test(field: Field, op: CompOp, values: Vec<Literal>) -> Result<Test, RuleSyntaxError> {
    let like = |values: Vec<Literal>| {
        let pattern = values
            .into_iter()
            .next()
            .map(|l| l.value)
            .unwrap_or_default();
        Glob(pattern.chars().collect())
    };
    let strings = |values: Vec<Literal>| values.into_iter().map(|l| l.value).collect::<Vec<_>>();
    Ok(match field {
        Field::Os => Test::OsIn(enum_values(
            &values,
            "os",
            Platform::parse,
            Platform::expected,
        )?),
        Field::Type => Test::TypeIn(enum_values(
            &values,
            "type",
            DeviceType::parse,
            DeviceType::expected,
        )?),
        Field::Name => match op {
            CompOp::Op(Op::Like) => Test::NameLike(like(values)),
            _ => Test::NameIn(strings(values)),
        },
        Field::Tags => match op {
            CompOp::Op(Op::Like) => Test::AnyTagLike(like(values)),
            _ => {
                for value in &values {
                    check_tag(value)?;
                }
                Test::HasAnyTag(strings(values))
            }
        },
        Field::OsVersion => {
            let cmp = match op {
                CompOp::Op(Op::Like) => return Ok(Test::VersionLike(like(values))),
                CompOp::Op(Op::Lt) => Cmp::Lt,
                CompOp::Op(Op::Le) => Cmp::Le,
                CompOp::Op(Op::Gt) => Cmp::Gt,
                CompOp::Op(Op::Ge) => Cmp::Ge,
                _ => return Ok(Test::VersionIn(strings(values))),
            };
            let mut values = values.into_iter();
            let Some(version) = values.next() else {
                return Err(error(1, "internal error: comparison without a value"));
            };
            if version.value.trim().is_empty() {
                return Err(error(
                    version.column,
                    format!(
                        "`os_version {}` needs a version, such as \"22.04\"",
                        op.symbol()
                    ),
                ));
            }
            Test::VersionCmp(cmp, version.value)
        }
    })
}

/// Parses each value as one of an enum's spellings, ignoring case, so that a
/// misspelt os or type is an error rather than a rule that never matches.
fn enum_values<T>(
    values: &[Literal],
    field: &str,
    parse: fn(&str) -> Option<T>,
    expected: fn() -> String,
) -> Result<Vec<T>, RuleSyntaxError> {
    values
        .iter()
        .map(|literal| {
            parse(&literal.value.to_ascii_lowercase()).ok_or_else(|| {
                error(
                    literal.column,
                    format!(
                        "unknown {field} {:?}; expected one of {}",
                        literal.value,
                        expected()
                    ),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    fn device(
        name: &str,
        os: Platform,
        version: &str,
        device_type: DeviceType,
        tags: &[&str],
    ) -> Device {
        Device {
            name: name.to_string(),
            os,
            os_version: version.to_string(),
            device_type,
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn linux_server() -> Device {
        device(
            "web-01",
            Platform::Linux,
            "22.04",
            DeviceType::Server,
            &["finance", "Prod"],
        )
    }

    fn windows_laptop() -> Device {
        device(
            "LAPTOP-7",
            Platform::Windows,
            "10.0.19045",
            DeviceType::Workstation,
            &["lab"],
        )
    }

    fn mac() -> Device {
        device(
            "mac-ana",
            Platform::Macos,
            "14.2.1",
            DeviceType::Workstation,
            &[],
        )
    }

    fn matches(rule: &str, device: &Device) -> Result<bool, RuleSyntaxError> {
        Ok(GroupRule::parse(rule)?.matches(device))
    }

    /// The error for a rule that must not parse; a rule that parses gives
    /// column 0, which no expected column equals.
    fn parse_error(rule: &str) -> RuleSyntaxError {
        match GroupRule::parse(rule) {
            Err(e) => e,
            Ok(parsed) => error(0, format!("unexpectedly parsed: {parsed:?}")),
        }
    }

    fn assert_error(rule: &str, column: usize, fragment: &str) {
        let e = parse_error(rule);
        assert_eq!(e.column, column, "column for {rule:?}: {e}");
        assert!(
            e.message.contains(fragment),
            "message for {rule:?} should contain {fragment:?}: {e}"
        );
    }

    #[test]
    fn design_doc_example() -> Result<(), RuleSyntaxError> {
        let rule = r#"os == "linux" and tag("finance") and not tag("lab")"#;
        assert!(matches(rule, &linux_server())?);
        assert!(!matches(rule, &windows_laptop())?);
        let mut lab = linux_server();
        lab.tags.push("LAB".to_string());
        assert!(!matches(rule, &lab)?);
        let mut no_finance = linux_server();
        no_finance.tags.clear();
        assert!(!matches(rule, &no_finance)?);
        Ok(())
    }

    #[test]
    fn source_is_kept_verbatim() -> Result<(), RuleSyntaxError> {
        let text = "  os == \"linux\"  ";
        assert_eq!(GroupRule::parse(text)?.source(), text);
        Ok(())
    }

    #[test]
    fn os_equality_and_inequality() -> Result<(), RuleSyntaxError> {
        assert!(matches(r#"os == "linux""#, &linux_server())?);
        assert!(!matches(r#"os == "linux""#, &mac())?);
        assert!(matches(r#"os != "linux""#, &mac())?);
        assert!(!matches(r#"os != "linux""#, &linux_server())?);
        // The value is an enum spelling, compared without case.
        assert!(matches(r#"os == "Linux""#, &linux_server())?);
        assert!(matches(r#"os == "MACOS""#, &mac())?);
        Ok(())
    }

    #[test]
    fn os_in_and_not_in() -> Result<(), RuleSyntaxError> {
        let rule = r#"os in ["linux", "macos"]"#;
        assert!(matches(rule, &linux_server())?);
        assert!(matches(rule, &mac())?);
        assert!(!matches(rule, &windows_laptop())?);
        let rule = r#"os not in ["linux", "macos",]"#;
        assert!(!matches(rule, &linux_server())?);
        assert!(matches(rule, &windows_laptop())?);
        Ok(())
    }

    #[test]
    fn device_type() -> Result<(), RuleSyntaxError> {
        assert!(matches(r#"type == "server""#, &linux_server())?);
        assert!(matches(r#"type == "Workstation""#, &mac())?);
        assert!(matches(r#"type != "server""#, &mac())?);
        assert!(matches(r#"type in ["workstation"]"#, &windows_laptop())?);
        assert!(!matches(
            r#"type not in ["workstation"]"#,
            &windows_laptop()
        )?);
        Ok(())
    }

    #[test]
    fn unknown_os_or_type_is_an_error_at_the_literal() {
        assert_error(
            r#"os == "linx""#,
            7,
            "unknown os \"linx\"; expected one of linux, windows, macos",
        );
        assert_error(r#"os in ["linux", "bsd"]"#, 17, "unknown os \"bsd\"");
        assert_error(
            r#"type != "desktop""#,
            9,
            "expected one of workstation, server",
        );
    }

    #[test]
    fn name_equality_ignores_case() -> Result<(), RuleSyntaxError> {
        assert!(matches(r#"name == "WEB-01""#, &linux_server())?);
        assert!(matches(r#"name == "laptop-7""#, &windows_laptop())?);
        assert!(!matches(r#"name != "laptop-7""#, &windows_laptop())?);
        assert!(matches(r#"name in ["x", "Web-01"]"#, &linux_server())?);
        assert!(matches(r#"name not in ["x", "y"]"#, &linux_server())?);
        Ok(())
    }

    #[test]
    fn name_glob() -> Result<(), RuleSyntaxError> {
        assert!(matches(r#"name ~ "web-*""#, &linux_server())?);
        assert!(matches(r#"name ~ "WEB-*""#, &linux_server())?);
        assert!(matches(r#"name ~ "*-01""#, &linux_server())?);
        assert!(matches(r#"name ~ "web-0?""#, &linux_server())?);
        assert!(!matches(r#"name ~ "web-?""#, &linux_server())?);
        assert!(!matches(r#"name ~ "db-*""#, &linux_server())?);
        assert!(matches(r#"name ~ "*""#, &linux_server())?);
        assert!(matches(r#"not name ~ "db-*""#, &linux_server())?);
        Ok(())
    }

    #[test]
    fn glob_matching() {
        let glob = |p: &str| Glob(p.chars().collect());
        let cases = [
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("**", "abc", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("*ab", "aab", true),
            ("*a?c", "xxabcabc", true),
            ("?", "é", true),
            ("??", "é", false),
            ("a*", "A", true),
            ("*x*x*x*x*x*y", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                glob(pattern).matches(text),
                expected,
                "{pattern:?} ~ {text:?}"
            );
        }
    }

    #[test]
    fn tag_function_ignores_case() -> Result<(), RuleSyntaxError> {
        assert!(matches(r#"tag("finance")"#, &linux_server())?);
        assert!(matches(r#"tag("FINANCE")"#, &linux_server())?);
        assert!(matches(r#"tag("prod")"#, &linux_server())?);
        assert!(!matches(r#"tag("lab")"#, &linux_server())?);
        assert!(matches(r#"tag ( "lab" )"#, &windows_laptop())?);
        Ok(())
    }

    #[test]
    fn tags_field() -> Result<(), RuleSyntaxError> {
        let server = linux_server();
        assert!(matches(r#"tags == "finance""#, &server)?);
        assert!(!matches(r#"tags == "lab""#, &server)?);
        assert!(matches(r#"tags != "lab""#, &server)?);
        assert!(!matches(r#"tags != "Finance""#, &server)?);
        assert!(matches(r#"tags in ["lab", "prod"]"#, &server)?);
        assert!(!matches(r#"tags in ["lab", "dev"]"#, &server)?);
        assert!(matches(r#"tags not in ["lab", "dev"]"#, &server)?);
        assert!(!matches(r#"tags not in ["lab", "finance"]"#, &server)?);
        assert!(matches(r#"tags ~ "fin*""#, &server)?);
        assert!(matches(r#"tags ~ "PR?D""#, &server)?);
        assert!(!matches(r#"tags ~ "lab*""#, &server)?);
        // A device without tags has none that match, even `*`.
        assert!(!matches(r#"tags ~ "*""#, &mac())?);
        assert!(matches(r#"tags != "x""#, &mac())?);
        Ok(())
    }

    #[test]
    fn os_version_comparisons() -> Result<(), RuleSyntaxError> {
        let server = linux_server(); // 22.04
        assert!(matches(r#"os_version >= "22.04""#, &server)?);
        assert!(matches(r#"os_version >= "22.4""#, &server)?);
        assert!(matches(r#"os_version > "20.10""#, &server)?);
        assert!(matches(r#"os_version < "22.10""#, &server)?);
        assert!(matches(r#"os_version <= "22.04""#, &server)?);
        assert!(!matches(r#"os_version < "22.04""#, &server)?);
        assert!(!matches(r#"os_version > "22.04""#, &server)?);
        assert!(!matches(r#"os_version >= "24""#, &server)?);
        assert!(matches(r#"os_version == "22.04.0""#, &server)?);
        assert!(matches(r#"os_version != "24.04""#, &server)?);
        assert!(matches(r#"os_version in ["20.04", "22.04"]"#, &server)?);
        assert!(matches(r#"os_version ~ "22.*""#, &server)?);
        let laptop = windows_laptop(); // 10.0.19045
        assert!(matches(r#"os_version >= "10.0.19041""#, &laptop)?);
        assert!(matches(r#"os_version < "10.0.22000""#, &laptop)?);
        assert!(matches(r#"os_version > "9.9""#, &laptop)?);
        Ok(())
    }

    #[test]
    fn version_ordering() {
        let cases = [
            ("22.04", "22.4", Ordering::Equal),
            ("22.10", "22.9", Ordering::Greater),
            ("10", "10.0.0", Ordering::Equal),
            ("10.0.1", "10", Ordering::Greater),
            ("1-rc1", "1-rc2", Ordering::Less),
            ("1.0-RC1", "1.0-rc1", Ordering::Equal),
            ("2.a", "2.b", Ordering::Less),
            ("99999999999999999999999", "1", Ordering::Greater),
            ("007", "7", Ordering::Equal),
        ];
        for (a, b, expected) in cases {
            assert_eq!(compare_versions(a, b), expected, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), expected.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn unknown_version_matches_no_ordering() -> Result<(), RuleSyntaxError> {
        let mut unknown = linux_server();
        unknown.os_version = String::new();
        assert!(!matches(r#"os_version < "1""#, &unknown)?);
        assert!(!matches(r#"os_version >= "1""#, &unknown)?);
        Ok(())
    }

    #[test]
    fn precedence_not_binds_tighter_than_and_tighter_than_or() -> Result<(), RuleSyntaxError> {
        let server = linux_server();
        // or is lowest: false and false or true == (false and false) or true.
        assert!(matches("false and false or true", &server)?);
        // and binds tighter: true or true and false == true or (true and false).
        assert!(matches("true or true and false", &server)?);
        assert!(!matches("(true or true) and false", &server)?);
        // not binds tightest: not false and false == (not false) and false.
        assert!(!matches("not false and false", &server)?);
        assert!(matches("not (false and false)", &server)?);
        assert!(matches("not not true", &server)?);
        let rule = r#"os == "windows" or os == "linux" and tag("finance")"#;
        assert!(matches(rule, &server)?);
        assert!(matches(rule, &windows_laptop())?);
        assert!(!matches(rule, &mac())?);
        Ok(())
    }

    #[test]
    fn whitespace_is_optional_and_free() -> Result<(), RuleSyntaxError> {
        assert!(matches(
            "os==\"linux\"and(tag(\"finance\"))",
            &linux_server()
        )?);
        assert!(matches(
            "os ==\n  \"linux\"\tand\r\n tag(\"finance\")",
            &linux_server()
        )?);
        Ok(())
    }

    #[test]
    fn escapes_in_strings() -> Result<(), RuleSyntaxError> {
        let d = device(
            r#"we"ird\name"#,
            Platform::Linux,
            "1",
            DeviceType::Server,
            &[],
        );
        assert!(matches(r#"name == "we\"ird\\name""#, &d)?);
        assert_error(r#"name == "a\nb""#, 11, "unknown escape `\\n`");
        Ok(())
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        // "é" is two bytes but one column.
        assert_error(
            "name == \"é\" and bogus == \"x\"",
            17,
            "unknown field `bogus`",
        );
    }

    #[test]
    fn error_empty_rule() {
        assert_error("", 1, "empty rule");
        assert_error("   \n ", 1, "empty rule");
    }

    #[test]
    fn error_unknown_field_lists_fields() {
        assert_error(
            r#"hostname == "x""#,
            1,
            "unknown field `hostname`; expected one of os, os_version, type, name, tags",
        );
        assert_error(
            r#"os == "linux" and platform == "x""#,
            19,
            "unknown field `platform`",
        );
        assert_error(r#"OS == "linux""#, 1, "lowercase: `os`");
        assert_error(r#"labels("x")"#, 1, "unknown function `labels`");
    }

    #[test]
    fn error_unterminated_string() {
        assert_error(r#"os == "linux"#, 7, "unterminated string");
        assert_error(r#"tag("a\"#, 5, "unterminated string");
        assert_error(r#"tag("a\")"#, 5, "unterminated string");
    }

    #[test]
    fn error_unexpected_tokens() {
        assert_error(r#"os = "linux""#, 4, "use `==`");
        assert_error(r#"os == "linux" && tag("a")"#, 15, "use `and`");
        assert_error(r#"os == "linux" || tag("a")"#, 15, "use `or`");
        assert_error(r#"!tag("a")"#, 1, "use `not`");
        assert_error(r#"os == 'linux'"#, 7, "double quotes");
        assert_error(r#"os == linux"#, 7, "write \"linux\"");
        assert_error(r#"os_version >= 22.04"#, 15, "write \"22.04\"");
        assert_error(r#"os "linux""#, 4, "expected an operator after `os`");
        assert_error(r#"os not "linux""#, 8, "expected `in` after `os not`");
        assert_error(r#"os == "linux" and"#, 18, "found the end of the rule");
        assert_error(r#"and os == "linux""#, 1, "expected a condition");
        assert_error(r#""linux" == os"#, 1, "put the field first");
        assert_error("()", 2, "expected a condition");
        assert_error("name == \"a\" $", 13, "unexpected character '$'");
        assert_error("tag", 4, "expected `(` after `tag`");
        assert_error("tag()", 5, "expected a quoted string after `tag(`");
        assert_error(r#"tag("")"#, 5, "a tag cannot be empty");
        assert_error(r#"tags in ["a", ""]"#, 15, "a tag cannot be empty");
        assert_error(r#"os == ["linux"]"#, 7, "use `in [...]`");
        assert_error(r#"os_version >= """#, 15, "needs a version");
    }

    #[test]
    fn error_missing_closing_paren() {
        assert_error(
            r#"(os == "linux""#,
            15,
            "missing `)` to close the `(` at column 1",
        );
        assert_error(
            r#"not (tag("a") or tag("b") tag("c")"#,
            27,
            "missing `)` to close the `(` at column 5",
        );
        assert_error(r#"tag("a" and true"#, 9, "missing `)` to close tag(");
    }

    #[test]
    fn error_missing_closing_bracket() {
        assert_error(
            r#"os in ["linux""#,
            15,
            "missing `]` to close the `[` at column 7",
        );
        assert_error(r#"os in ["linux", "macos" and true"#, 25, "missing `]`");
        assert_error(
            r#"os in ["linux","#,
            16,
            "missing `]` to close the `[` at column 7",
        );
        assert_error(r#"os in []"#, 8, "empty list");
        assert_error(r#"os in "linux""#, 7, "expected a list");
        assert_error(r#"os in"#, 6, "expected a list");
    }

    #[test]
    fn error_trailing_input() {
        assert_error(
            r#"os == "linux" tag("a")"#,
            15,
            "after a complete condition",
        );
        assert_error(r#"os == "linux")"#, 14, "unmatched `)`");
        assert_error("true false", 6, "after a complete condition");
    }

    #[test]
    fn error_operator_not_allowed_for_field() {
        assert_error(
            r#"name < "m""#,
            6,
            "operator `<` is not allowed for `name`; use one of ==, !=, in, not in, ~",
        );
        assert_error(r#"os ~ "lin*""#, 4, "operator `~` is not allowed for `os`");
        assert_error(
            r#"type >= "server""#,
            6,
            "operator `>=` is not allowed for `type`",
        );
        assert_error(r#"tags > "a""#, 6, "operator `>` is not allowed for `tags`");
    }

    #[test]
    fn error_too_deep() -> Result<(), RuleSyntaxError> {
        let ok = format!("{}true{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(matches(&ok, &mac())?);
        let deep = format!(
            "{}true{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert_error(&deep, MAX_DEPTH + 1, "nests too deeply");
        let huge = "(".repeat(1_000_000);
        assert_error(&huge, MAX_DEPTH + 1, "nests too deeply");
        let nots = "not ".repeat(100_000) + "true";
        assert_error(&nots, 4 * MAX_DEPTH + 1, "nests too deeply");
        Ok(())
    }

    #[test]
    fn long_flat_chains_do_not_nest() -> Result<(), RuleSyntaxError> {
        let chain = vec!["tag(\"x\")"; 100_000].join(" or ") + " or true";
        assert!(matches(&chain, &mac())?);
        let chain = vec!["true"; 100_000].join(" and ");
        assert!(matches(&chain, &mac())?);
        Ok(())
    }

    const VALID_RULES: &[&str] = &[
        r#"os == "linux" and tag("finance") and not tag("lab")"#,
        r#"(os in ["linux", "macos"] or type != "server") and name ~ "web-*""#,
        r#"os_version >= "22.04" and os_version < "24" or tags ~ "fin*""#,
        r#"not (name == "a\"b\\c" or tags not in ["x", "y",]) and true"#,
        r#"type == "workstation" and not not false or os_version ~ "10.0.*""#,
        "tag(\"é日本\") or name == \"ünïcødé\"",
    ];

    #[test]
    fn valid_rules_parse() -> Result<(), RuleSyntaxError> {
        for rule in VALID_RULES {
            GroupRule::parse(rule)?;
        }
        Ok(())
    }

    #[test]
    fn no_panic_on_prefixes_and_suffixes() {
        let devices = [linux_server(), windows_laptop(), mac()];
        for rule in VALID_RULES {
            let cuts = rule.char_indices().map(|(i, _)| i).chain([rule.len()]);
            for cut in cuts {
                for piece in [&rule[..cut], &rule[cut..]] {
                    match GroupRule::parse(piece) {
                        Ok(parsed) => {
                            for d in &devices {
                                parsed.matches(d);
                            }
                        }
                        Err(e) => {
                            let columns = piece.chars().count() + 1;
                            assert!(
                                (1..=columns).contains(&e.column),
                                "column {} out of range for {piece:?}: {e}",
                                e.column
                            );
                        }
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn no_panic_on_arbitrary_text(text in any::<String>()) {
            if let Err(e) = GroupRule::parse(&text) {
                prop_assert!(e.column >= 1 && e.column <= text.chars().count() + 1);
            }
        }

        #[test]
        fn no_panic_on_token_soup(
            pieces in prop::collection::vec(
                prop::sample::select(vec![
                    "os", "os_version", "type", "name", "tags", "tag", "and", "or", "not",
                    "in", "true", "false", "(", ")", "[", "]", ",", "==", "!=", "~", "<",
                    "<=", ">", ">=", "\"linux\"", "\"server\"", "\"22.04\"", "\"a*\"", "\"",
                    "\\", "\"\\\"", " ", "é", "=", "!", "22.04",
                ]),
                0..40,
            )
        ) {
            let text = pieces.concat();
            match GroupRule::parse(&text) {
                Ok(rule) => {
                    rule.matches(&linux_server());
                }
                Err(e) => {
                    prop_assert!(e.column >= 1 && e.column <= text.chars().count() + 1);
                }
            }
        }
    }
}
