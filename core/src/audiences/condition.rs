//! The audience condition language: a JSON tree and an SQL-like text form that round-trip.
//!
//! ```text
//! account.seats_provisioned > 3 AND PERFORMED integration_connected WITHIN 30 DAYS
//! plan_tier = 'free' AND PERFORMED teammate_invited AT LEAST 2 TIMES
//!     AND NOT PERFORMED integration_connected EVER
//! plan_tier = 'pro' AND NOT PERFORMED ANY WITHIN 7 DAYS
//! PERFORMED feature_toggled WHERE (feature_name = 'dark_mode' AND new_status = true) EXACTLY 1 TIME
//! IN AUDIENCE product_qualified_lead OR user_role IN ('admin', 'owner') OR email EXISTS
//! ```
//! Paths: a bare name or `traits.name` is a profile trait, `account.name` an account (group)
//! trait, `computed.name` a computed trait (`messages_total`, `first_seen`, `last_seen`,
//! `active_days_30d`, `journey_stage`). `ANY` matches any track, page or screen; `page_viewed`
//! matches page calls.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A condition tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// All must hold.
    And(Vec<Condition>),
    /// One must hold.
    Or(Vec<Condition>),
    /// Must not hold.
    Not(Box<Condition>),
    /// A trait or computed-trait comparison.
    Trait(Comparison),
    /// An event condition.
    Performed(Performed),
    /// Membership of another audience.
    InAudience(String),
}

/// `path op value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Trait path.
    pub path: String,
    /// Operator.
    pub op: Op,
    /// Operand (absent for `exists`; a list for `in`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Literal>,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Equal.
    #[serde(rename = "=")]
    Eq,
    /// Not equal (missing values are not equal).
    #[serde(rename = "!=")]
    Ne,
    /// Less than.
    #[serde(rename = "<")]
    Lt,
    /// At most.
    #[serde(rename = "<=")]
    Le,
    /// Greater than.
    #[serde(rename = ">")]
    Gt,
    /// At least.
    #[serde(rename = ">=")]
    Ge,
    /// String contains.
    #[serde(rename = "contains")]
    Contains,
    /// String prefix.
    #[serde(rename = "starts_with")]
    StartsWith,
    /// One of a list.
    #[serde(rename = "in")]
    In,
    /// Has any value.
    #[serde(rename = "exists")]
    Exists,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "CONTAINS",
            Op::StartsWith => "STARTS_WITH",
            Op::In => "IN",
            Op::Exists => "EXISTS",
        }
    }
}

/// A literal operand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Literal {
    /// Boolean.
    Bool(bool),
    /// Number.
    Num(f64),
    /// String.
    Str(String),
    /// List (for `in`).
    List(Vec<Literal>),
}

/// `PERFORMED event [WHERE (filters)] [count] [window]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Performed {
    /// Event name, `page_viewed`, or `any`.
    pub event: String,
    /// Property filters, all of which must hold for an event to count.
    #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Comparison>,
    /// How many times (default: at least once).
    #[serde(default)]
    pub count: Count,
    /// Window in days; `None` is ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_days: Option<u32>,
}

/// A count requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Comparison.
    pub op: CountOp,
    /// Times.
    pub n: u32,
}

impl Default for Count {
    fn default() -> Self {
        Count {
            op: CountOp::AtLeast,
            n: 1,
        }
    }
}

impl Count {
    /// Whether `k` events satisfy the requirement.
    pub fn holds(self, k: u32) -> bool {
        match self.op {
            CountOp::AtLeast => k >= self.n,
            CountOp::AtMost => k <= self.n,
            CountOp::Exactly => k == self.n,
        }
    }
}

/// Count comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountOp {
    /// `>= n`.
    AtLeast,
    /// `<= n`.
    AtMost,
    /// `== n`.
    Exactly,
}

/// A text-form parse error, pointing at a 1-based column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {message}")]
pub struct ParseError {
    /// 1-based column (character position) of the problem.
    pub column: usize,
    /// What was expected.
    pub message: String,
}

impl Condition {
    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Condition, ParseError> {
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            end: text.chars().count() + 1,
            depth: 0,
        };
        let c = p.or()?;
        match p.peek() {
            None => Ok(c),
            Some(t) => Err(p.error_at(t.col, format!("unexpected {}", t.describe()))),
        }
    }

    /// Every audience this condition refers to.
    pub fn audiences(&self, out: &mut Vec<String>) {
        match self {
            Condition::And(v) | Condition::Or(v) => v.iter().for_each(|c| c.audiences(out)),
            Condition::Not(c) => c.audiences(out),
            Condition::InAudience(a) => out.push(a.clone()),
            _ => {}
        }
    }

    /// Every trait path this condition reads.
    pub fn trait_paths(&self, out: &mut Vec<String>) {
        match self {
            Condition::And(v) | Condition::Or(v) => v.iter().for_each(|c| c.trait_paths(out)),
            Condition::Not(c) => c.trait_paths(out),
            Condition::Trait(t) => out.push(t.path.clone()),
            _ => {}
        }
    }

    /// Every event condition in the tree.
    pub fn performed<'a>(&'a self, out: &mut Vec<&'a Performed>) {
        match self {
            Condition::And(v) | Condition::Or(v) => v.iter().for_each(|c| c.performed(out)),
            Condition::Not(c) => c.performed(out),
            Condition::Performed(p) => out.push(p),
            _ => {}
        }
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Num(n) => f.write_str(&fmt_num(*n)),
            Literal::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Literal::List(items) => {
                f.write_str("(")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str(")")
            }
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.op, &self.value) {
            (Op::Exists, _) | (_, None) => write!(f, "{} EXISTS", self.path),
            (op, Some(v)) => write!(f, "{} {} {v}", self.path, op.text()),
        }
    }
}

impl fmt::Display for Performed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let event = if self.event.eq_ignore_ascii_case("any") {
            "ANY"
        } else {
            &self.event
        };
        write!(f, "PERFORMED {event}")?;
        if !self.filters.is_empty() {
            f.write_str(" WHERE (")?;
            for (i, c) in self.filters.iter().enumerate() {
                if i > 0 {
                    f.write_str(" AND ")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str(")")?;
        }
        if self.count != Count::default() {
            let op = match self.count.op {
                CountOp::AtLeast => "AT LEAST",
                CountOp::AtMost => "AT MOST",
                CountOp::Exactly => "EXACTLY",
            };
            let times = if self.count.n == 1 { "TIME" } else { "TIMES" };
            write!(f, " {op} {} {times}", self.count.n)?;
        }
        match self.within_days {
            Some(d) => write!(f, " WITHIN {d} {}", if d == 1 { "DAY" } else { "DAYS" }),
            None => f.write_str(" EVER"),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn child(f: &mut fmt::Formatter<'_>, c: &Condition, parent_and: bool) -> fmt::Result {
            let wrap =
                matches!(c, Condition::Or(_)) || (!parent_and && matches!(c, Condition::And(_)));
            if wrap {
                write!(f, "({c})")
            } else {
                write!(f, "{c}")
            }
        }
        match self {
            Condition::And(v) | Condition::Or(v) => {
                let and = matches!(self, Condition::And(_));
                for (i, c) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(if and { " AND " } else { " OR " })?;
                    }
                    if and {
                        child(f, c, true)?;
                    } else if matches!(c, Condition::Or(_)) {
                        write!(f, "({c})")?;
                    } else {
                        write!(f, "{c}")?;
                    }
                }
                Ok(())
            }
            Condition::Not(c) => match **c {
                Condition::And(_) | Condition::Or(_) => write!(f, "NOT ({c})"),
                _ => write!(f, "NOT {c}"),
            },
            Condition::Trait(t) => write!(f, "{t}"),
            Condition::Performed(p) => write!(f, "{p}"),
            Condition::InAudience(a) => write!(f, "IN AUDIENCE {a}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64),
    Sym(&'static str),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    col: usize,
}

impl Token {
    fn describe(&self) -> String {
        match &self.tok {
            Tok::Word(w) => format!("{w:?}"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::Num(n) => format!("number {}", fmt_num(*n)),
            Tok::Sym(s) => format!("{s:?}"),
        }
    }
}

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            let quote = c;
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(ParseError {
                            column: col,
                            message: "unterminated string".into(),
                        });
                    }
                    Some(&ch) if ch == quote => {
                        if chars.get(i + 1) == Some(&quote) {
                            s.push(quote);
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Token {
                tok: Tok::Str(s),
                col,
            });
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            let n = s.parse().map_err(|_| ParseError {
                column: col,
                message: format!("bad number {s:?}"),
            })?;
            out.push(Token {
                tok: Tok::Num(n),
                col,
            });
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric()
                    || chars[i] == '_'
                    || chars[i] == '.'
                    || chars[i] == '-')
            {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Word(chars[start..i].iter().collect()),
                col,
            });
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let sym = match two.as_str() {
                "!=" => Some("!="),
                "<>" => Some("!="),
                "<=" => Some("<="),
                ">=" => Some(">="),
                "==" => Some("="),
                _ => None,
            };
            if let Some(s) = sym {
                out.push(Token {
                    tok: Tok::Sym(s),
                    col,
                });
                i += 2;
                continue;
            }
            let one = match c {
                '=' => "=",
                '<' => "<",
                '>' => ">",
                '(' => "(",
                ')' => ")",
                ',' => ",",
                _ => {
                    return Err(ParseError {
                        column: col,
                        message: format!("unexpected character {c:?}"),
                    });
                }
            };
            out.push(Token {
                tok: Tok::Sym(one),
                col,
            });
            i += 1;
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    end: usize,
    depth: usize,
}

/// Deepest nesting of parentheses and NOTs accepted (keeps hostile input off the stack).
const MAX_DEPTH: usize = 64;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn col(&self) -> usize {
        self.peek().map_or(self.end, |t| t.col)
    }

    fn error_at(&self, column: usize, message: String) -> ParseError {
        ParseError { column, message }
    }

    fn expected(&self, what: &str) -> ParseError {
        let found = self
            .peek()
            .map_or_else(|| "the end".to_owned(), Token::describe);
        self.error_at(self.col(), format!("expected {what}, found {found}"))
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token { tok: Tok::Word(w), .. }) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), ParseError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.expected(kw))
        }
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Token { tok: Tok::Sym(x), .. }) if *x == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Condition, ParseError> {
        let mut items = vec![self.and()?];
        while self.eat_kw("OR") {
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Condition::Or(items)
        })
    }

    fn and(&mut self) -> Result<Condition, ParseError> {
        let mut items = vec![self.not()?];
        while self.eat_kw("AND") {
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Condition::And(items)
        })
    }

    fn not(&mut self) -> Result<Condition, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(self.col(), format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let result = if self.eat_kw("NOT") {
            self.not().map(|c| Condition::Not(Box::new(c)))
        } else {
            self.primary()
        };
        self.depth -= 1;
        result
    }

    fn primary(&mut self) -> Result<Condition, ParseError> {
        if self.eat_sym("(") {
            let c = self.or()?;
            if !self.eat_sym(")") {
                return Err(self.expected("\")\""));
            }
            return Ok(c);
        }
        if self.eat_kw("PERFORMED") {
            return self.performed();
        }
        if self.is_kw("IN") {
            self.pos += 1;
            self.expect_kw("AUDIENCE")?;
            return Ok(Condition::InAudience(self.name("an audience id")?));
        }
        let path = self.name("a trait, PERFORMED, IN AUDIENCE, NOT or \"(\"")?;
        Ok(Condition::Trait(self.comparison(path)?))
    }

    fn name(&mut self, what: &str) -> Result<String, ParseError> {
        match self.peek() {
            Some(Token {
                tok: Tok::Word(w), ..
            }) if !["AND", "OR", "NOT"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.expected(what)),
        }
    }

    fn comparison(&mut self, path: String) -> Result<Comparison, ParseError> {
        let op = match self.peek().map(|t| t.tok.clone()) {
            Some(Tok::Sym("=")) => Op::Eq,
            Some(Tok::Sym("!=")) => Op::Ne,
            Some(Tok::Sym("<")) => Op::Lt,
            Some(Tok::Sym("<=")) => Op::Le,
            Some(Tok::Sym(">")) => Op::Gt,
            Some(Tok::Sym(">=")) => Op::Ge,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("CONTAINS") => Op::Contains,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("STARTS_WITH") => Op::StartsWith,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("IN") => Op::In,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("EXISTS") => Op::Exists,
            _ => {
                return Err(self.expected(
                    "an operator (=, !=, <, <=, >, >=, CONTAINS, STARTS_WITH, IN, EXISTS)",
                ));
            }
        };
        self.pos += 1;
        let value = match op {
            Op::Exists => None,
            Op::In => {
                if !self.eat_sym("(") {
                    return Err(self.expected("\"(\" starting the IN list"));
                }
                let mut items = vec![self.literal()?];
                while self.eat_sym(",") {
                    items.push(self.literal()?);
                }
                if !self.eat_sym(")") {
                    return Err(self.expected("\",\" or \")\""));
                }
                Some(Literal::List(items))
            }
            Op::Contains | Op::StartsWith => match self.literal()? {
                s @ Literal::Str(_) => Some(s),
                _ => {
                    return Err(
                        self.error_at(self.tokens[self.pos - 1].col, "expected a string".into())
                    );
                }
            },
            _ => Some(self.literal()?),
        };
        Ok(Comparison { path, op, value })
    }

    fn literal(&mut self) -> Result<Literal, ParseError> {
        let lit = match self.peek().map(|t| t.tok.clone()) {
            Some(Tok::Str(s)) => Literal::Str(s),
            Some(Tok::Num(n)) => Literal::Num(n),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            _ => return Err(self.expected("a value ('text', a number, true or false)")),
        };
        self.pos += 1;
        Ok(lit)
    }

    fn number(&mut self, what: &str) -> Result<u32, ParseError> {
        match self.peek().map(|t| t.tok.clone()) {
            Some(Tok::Num(n)) if n >= 0.0 && n.fract() == 0.0 && n <= f64::from(u32::MAX) => {
                self.pos += 1;
                Ok(n as u32)
            }
            _ => Err(self.expected(what)),
        }
    }

    fn performed(&mut self) -> Result<Condition, ParseError> {
        let event = self.name("an event name or ANY")?;
        let event = if event.eq_ignore_ascii_case("any") {
            "any".to_owned()
        } else {
            event
        };
        let mut filters = Vec::new();
        if self.eat_kw("WHERE") {
            if !self.eat_sym("(") {
                return Err(self.expected("\"(\" after WHERE"));
            }
            loop {
                let path = self.name("a property name")?;
                filters.push(self.comparison(path)?);
                if !self.eat_kw("AND") {
                    break;
                }
            }
            if !self.eat_sym(")") {
                return Err(self.expected("AND or \")\" closing WHERE"));
            }
        }
        let mut count = Count::default();
        let op = if self.eat_kw("AT") {
            if self.eat_kw("LEAST") {
                Some(CountOp::AtLeast)
            } else if self.eat_kw("MOST") {
                Some(CountOp::AtMost)
            } else {
                return Err(self.expected("LEAST or MOST"));
            }
        } else if self.eat_kw("EXACTLY") {
            Some(CountOp::Exactly)
        } else {
            None
        };
        if let Some(op) = op {
            count = Count {
                op,
                n: self.number("a count")?,
            };
            if !self.eat_kw("TIMES") {
                self.eat_kw("TIME");
            }
        }
        let within_days = if self.eat_kw("WITHIN") {
            let d = self.number("a number of days")?;
            if d == 0 {
                return Err(self.error_at(
                    self.tokens[self.pos - 1].col,
                    "the window must be at least 1 day".into(),
                ));
            }
            if !self.eat_kw("DAYS") && !self.eat_kw("DAY") {
                return Err(self.expected("DAYS"));
            }
            Some(d)
        } else {
            self.eat_kw("EVER");
            None
        };
        Ok(Condition::Performed(Performed {
            event,
            filters,
            count,
            within_days,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLES: [&str; 6] = [
        "account.seats_provisioned > 3 AND PERFORMED integration_connected WITHIN 30 DAYS",
        "plan_tier = 'free' AND PERFORMED teammate_invited AT LEAST 2 TIMES EVER AND NOT PERFORMED integration_connected EVER",
        "plan_tier = 'pro' AND NOT PERFORMED ANY WITHIN 7 DAYS",
        "PERFORMED feature_toggled WHERE (feature_name = 'dark_mode' AND new_status = true) EXACTLY 1 TIME EVER",
        "IN AUDIENCE product_qualified_lead OR user_role IN ('admin', 'it''s') OR email EXISTS",
        "NOT (a = 1 OR b != -2.5) AND (c CONTAINS 'x' OR d STARTS_WITH 'y') AND computed.active_days_30d >= 3",
    ];

    #[test]
    fn the_seed_examples_parse_and_round_trip_through_text_and_json() {
        for text in EXAMPLES {
            let c = Condition::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let printed = c.to_string();
            assert_eq!(
                Condition::parse(&printed).unwrap(),
                c,
                "text round trip of {text}"
            );
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(
                serde_json::from_str::<Condition>(&json).unwrap(),
                c,
                "json {json}"
            );
        }
    }

    #[test]
    fn the_pql_has_the_expected_tree() {
        let c = Condition::parse(EXAMPLES[0]).unwrap();
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"and": [
                {"trait": {"path": "account.seats_provisioned", "op": ">", "value": 3.0}},
                {"performed": {"event": "integration_connected", "count": {"op": "at_least", "n": 1}, "within_days": 30}}
            ]})
        );
    }

    #[test]
    fn hostile_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}a = 1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(
            Condition::parse(&deep)
                .unwrap_err()
                .message
                .contains("nested")
        );
        let nots = format!("{}a = 1", "NOT ".repeat(10_000));
        assert!(Condition::parse(&nots).is_err());
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let c = Condition::parse("a = 1 OR b = 2 AND c = 3").unwrap();
        assert!(matches!(&c, Condition::Or(v) if matches!(v[1], Condition::And(_))));
    }

    #[test]
    fn parse_errors_point_at_the_column() {
        let e =
            Condition::parse("plan_tier = 'free' AND PERFORMED x AT LEAST two TIMES").unwrap_err();
        assert_eq!(e.column, 45, "{e}");
        assert!(e.message.contains("count"));
        let e = Condition::parse("plan_tier ~ 1").unwrap_err();
        assert_eq!(e.column, 11);
        let e = Condition::parse("(a = 1").unwrap_err();
        assert!(e.message.contains(")"), "{e}");
        let e = Condition::parse("name = 'open").unwrap_err();
        assert_eq!(e.column, 8);
    }
}
