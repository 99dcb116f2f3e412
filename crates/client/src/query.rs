//! `--query`: the part of Teleport's predicate language a listing needs,
//! parsed into an [`Expr`] by a recursive-descent parser and evaluated
//! against a resource's name, description and labels.
//!
//! ```text
//! expr    := and ("||" and)*
//! and     := unary ("&&" unary)*
//! unary   := "!" unary | "(" expr ")" | compare
//! compare := value (("==" | "!=") value)?      a lone value must be a boolean
//! value   := STRING | true | false | field | FUNC "(" value ("," value)* ")"
//! field   := name | description | labels.KEY | labels["KEY"]
//!          | resource.metadata.name | resource.metadata.description
//!          | resource.metadata.labels.KEY | resource.metadata.labels["KEY"]
//! FUNC    := hasPrefix | exists | equals | search
//! ```
//!
//! The text is the user's, but a query also arrives through scripts: no
//! input panics, nesting is bounded, and every error names what is
//! supported.

use std::collections::BTreeMap;
use std::fmt;

/// Longest query accepted, in bytes.
const MAX_LEN: usize = 4096;
/// Deepest nesting of `!`, parentheses and calls accepted.
const MAX_DEPTH: usize = 64;

const FIELDS: &str = "name, description, labels.KEY, labels[\"KEY\"], resource.metadata.name, resource.metadata.description, resource.metadata.labels.KEY";
const FUNCS: &str = "hasPrefix(s, prefix), exists(labels.KEY), equals(a, b), search(\"kw\", ...)";

/// A query that could not be parsed: what and where (byte offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// What went wrong.
    pub message: String,
    /// Where, in characters from the start of the query (0-based).
    pub at: usize,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid --query at character {}: {} (example: labels[\"env\"] == \"dev\" && hasPrefix(name, \"web\"))",
            self.at + 1,
            self.message
        )
    }
}

impl std::error::Error for QueryError {}

/// A field of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `name`.
    Name,
    /// `description`.
    Description,
    /// `labels.KEY` / `labels["KEY"]`.
    Label(String),
}

/// A string-valued term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A quoted literal.
    Str(String),
    /// A field of the resource.
    Field(Field),
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `true` / `false`.
    Bool(bool),
    /// `a == b` (or `equals(a, b)`).
    Eq(Value, Value),
    /// `a != b`.
    Ne(Value, Value),
    /// `a && b`.
    And(Box<Expr>, Box<Expr>),
    /// `a || b`.
    Or(Box<Expr>, Box<Expr>),
    /// `!a`.
    Not(Box<Expr>),
    /// `hasPrefix(value, prefix)`.
    HasPrefix(Value, Value),
    /// `exists(labels.KEY)`.
    Exists(String),
    /// `search("kw", ...)`: every keyword found (see [`matches_search`]).
    Search(Vec<String>),
}

/// What a query is evaluated against.
pub struct Resource<'a> {
    /// Name.
    pub name: &'a str,
    /// Description.
    pub description: &'a str,
    /// All labels (static and dynamic).
    pub labels: &'a BTreeMap<String, String>,
}

impl Resource<'_> {
    fn get(&self, v: &Value) -> String {
        match v {
            Value::Str(s) => s.clone(),
            Value::Field(Field::Name) => self.name.to_string(),
            Value::Field(Field::Description) => self.description.to_string(),
            Value::Field(Field::Label(k)) => self.labels.get(k).cloned().unwrap_or_default(),
        }
    }
}

impl Expr {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Expr, QueryError> {
        if text.len() > MAX_LEN {
            return Err(QueryError {
                message: format!("the query is longer than {MAX_LEN} bytes"),
                at: 0,
            });
        }
        // Positions are byte offsets while parsing, characters in errors.
        Self::parse_bytes(text).map_err(|e| QueryError {
            at: text.get(..e.at).map_or(e.at, |t| t.chars().count()),
            ..e
        })
    }

    fn parse_bytes(text: &str) -> Result<Expr, QueryError> {
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            depth: 0,
            end: text.len(),
        };
        let e = p.expr()?;
        match p.peek() {
            None => Ok(e),
            Some((t, at)) => Err(QueryError {
                message: format!(
                    "unexpected {t} after a complete expression (join conditions with && or ||)"
                ),
                at,
            }),
        }
    }

    /// Whether `r` matches.
    pub fn eval(&self, r: &Resource<'_>) -> bool {
        match self {
            Expr::Bool(b) => *b,
            Expr::Eq(a, b) => r.get(a) == r.get(b),
            Expr::Ne(a, b) => r.get(a) != r.get(b),
            Expr::And(a, b) => a.eval(r) && b.eval(r),
            Expr::Or(a, b) => a.eval(r) || b.eval(r),
            Expr::Not(a) => !a.eval(r),
            Expr::HasPrefix(a, b) => r.get(a).starts_with(&r.get(b)),
            Expr::Exists(k) => r.labels.contains_key(k),
            Expr::Search(kws) => matches_search(kws, r.name, r.description, r.labels),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Comma,
    EqEq,
    NotEq,
    AndAnd,
    OrOr,
    Bang,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "{s:?}"),
            Tok::Str(s) => write!(f, "string {s:?}"),
            Tok::LParen => f.write_str("\"(\""),
            Tok::RParen => f.write_str("\")\""),
            Tok::LBracket => f.write_str("\"[\""),
            Tok::RBracket => f.write_str("\"]\""),
            Tok::Dot => f.write_str("\".\""),
            Tok::Comma => f.write_str("\",\""),
            Tok::EqEq => f.write_str("\"==\""),
            Tok::NotEq => f.write_str("\"!=\""),
            Tok::AndAnd => f.write_str("\"&&\""),
            Tok::OrOr => f.write_str("\"||\""),
            Tok::Bang => f.write_str("\"!\""),
        }
    }
}

fn err(message: impl Into<String>, at: usize) -> QueryError {
    QueryError {
        message: message.into(),
        at,
    }
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, QueryError> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let two = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>, next: char| {
            chars.next_if(|&(_, n)| n == next).is_some()
        };
        let tok =
            match c {
                c if c.is_whitespace() => continue,
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                '[' => Tok::LBracket,
                ']' => Tok::RBracket,
                '.' => Tok::Dot,
                ',' => Tok::Comma,
                '=' if two(&mut chars, '=') => Tok::EqEq,
                '=' => return Err(err("a lone \"=\": compare with == or !=", at)),
                '!' if two(&mut chars, '=') => Tok::NotEq,
                '!' => Tok::Bang,
                '&' if two(&mut chars, '&') => Tok::AndAnd,
                '|' if two(&mut chars, '|') => Tok::OrOr,
                '&' | '|' => return Err(err(format!("a lone {c:?}: use && or ||"), at)),
                '"' | '\'' | '`' => {
                    let quote = c;
                    let mut s = String::new();
                    loop {
                        match chars.next() {
                            None => return Err(err("a string is not closed", at)),
                            Some((_, q)) if q == quote => break,
                            Some((i, '\\')) if quote != '`' => match chars.next() {
                                Some((_, e @ ('\\' | '"' | '\''))) => s.push(e),
                                Some((_, 'n')) => s.push('\n'),
                                Some((_, 't')) => s.push('\t'),
                                _ => return Err(err(
                                    "unknown escape in a string (supported: \\\\ \\\" \\' \\n \\t)",
                                    i,
                                )),
                            },
                            Some((_, ch)) => s.push(ch),
                        }
                    }
                    Tok::Str(s)
                }
                c if c.is_alphabetic() || c == '_' => {
                    let mut s = String::from(c);
                    while let Some((_, n)) = chars
                        .next_if(|&(_, n)| n.is_alphanumeric() || n == '_' || n == '-' || n == '/')
                    {
                        s.push(n);
                    }
                    Tok::Ident(s)
                }
                other => {
                    return Err(err(
                        format!(
                            "unexpected character {:?}",
                            other.escape_debug().to_string()
                        ),
                        at,
                    ))
                }
            };
        out.push((tok, at));
    }
    Ok(out)
}

/// A parsed term: a boolean expression or a string value.
enum Term {
    Bool(Expr),
    Value(Value),
}

struct Parser {
    tokens: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<(&Tok, usize)> {
        self.tokens.get(self.pos).map(|(t, at)| (t, *at))
    }

    fn here(&self) -> usize {
        self.peek().map_or(self.end, |(_, at)| at)
    }

    fn next(&mut self) -> Option<(Tok, usize)> {
        let t = self.tokens.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek().is_some_and(|(p, _)| p == t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &Tok, what: &str) -> Result<(), QueryError> {
        if self.eat(t) {
            return Ok(());
        }
        let at = self.here();
        Err(match self.peek() {
            Some((found, _)) => err(format!("expected {what}, found {found}"), at),
            None => err(format!("expected {what} at the end of the query"), at),
        })
    }

    fn deeper(&mut self) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(
                format!("nested more than {MAX_DEPTH} levels deep"),
                self.here(),
            ));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, QueryError> {
        self.chain(&Tok::OrOr, Self::and, Expr::Or)
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        self.chain(&Tok::AndAnd, Self::unary, Expr::And)
    }

    /// `operand (op operand)*`, grouped from the left.
    fn chain(
        &mut self,
        op: &Tok,
        operand: fn(&mut Self) -> Result<Expr, QueryError>,
        join: fn(Box<Expr>, Box<Expr>) -> Expr,
    ) -> Result<Expr, QueryError> {
        let mut left = operand(self)?;
        while self.eat(op) {
            let right = operand(self)?;
            left = join(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        self.deeper()?;
        let e = if self.eat(&Tok::Bang) {
            Expr::Not(Box::new(self.unary()?))
        } else if self.eat(&Tok::LParen) {
            let e = self.expr()?;
            self.expect(&Tok::RParen, "\")\"")?;
            e
        } else {
            self.compare()?
        };
        self.depth -= 1;
        Ok(e)
    }

    fn compare(&mut self) -> Result<Expr, QueryError> {
        let at = self.here();
        let left = self.term()?;
        let op = match self.peek() {
            Some((Tok::EqEq, _)) => Some(true),
            Some((Tok::NotEq, _)) => Some(false),
            _ => None,
        };
        let Some(eq) = op else {
            return match left {
                Term::Bool(e) => Ok(e),
                Term::Value(_) => Err(err(
                    "a value alone is not a condition: compare it (== or !=) or use a function",
                    at,
                )),
            };
        };
        self.pos += 1;
        let right_at = self.here();
        let right = self.term()?;
        let (Term::Value(a), Term::Value(b)) = (left, right) else {
            return Err(err(
                "== and != compare strings and fields, not conditions",
                right_at,
            ));
        };
        Ok(if eq { Expr::Eq(a, b) } else { Expr::Ne(a, b) })
    }

    fn value(&mut self) -> Result<Value, QueryError> {
        let at = self.here();
        match self.term()? {
            Term::Value(v) => Ok(v),
            Term::Bool(_) => Err(err("expected a string or a field, found a condition", at)),
        }
    }

    fn term(&mut self) -> Result<Term, QueryError> {
        let at = self.here();
        match self.next() {
            Some((Tok::Str(s), _)) => Ok(Term::Value(Value::Str(s))),
            Some((Tok::Ident(id), _)) => {
                if self.peek().is_some_and(|(t, _)| *t == Tok::LParen) {
                    self.pos += 1;
                    return self.call(&id, at).map(Term::Bool);
                }
                match id.as_str() {
                    "true" => Ok(Term::Bool(Expr::Bool(true))),
                    "false" => Ok(Term::Bool(Expr::Bool(false))),
                    _ => self.field(id, at).map(|f| Term::Value(Value::Field(f))),
                }
            }
            Some((t, _)) => Err(err(
                format!("expected a string, a field or a function, found {t}"),
                at,
            )),
            None => Err(err(
                "the query ends where a string, a field or a function was expected",
                at,
            )),
        }
    }

    /// After `ident`: `.a.b`, `["k"]`.
    fn field(&mut self, first: String, at: usize) -> Result<Field, QueryError> {
        let mut path = vec![first];
        loop {
            if self.eat(&Tok::Dot) {
                match self.next() {
                    Some((Tok::Ident(s), _)) => path.push(s),
                    _ => return Err(err("expected a name after \".\"", self.here())),
                }
            } else if self.eat(&Tok::LBracket) {
                let key = match self.next() {
                    Some((Tok::Str(s), _)) => s,
                    _ => return Err(err("expected a quoted key inside [ ]", self.here())),
                };
                self.expect(&Tok::RBracket, "\"]\"")?;
                path.push(key);
                // A key in brackets ends the field.
                break;
            } else {
                break;
            }
        }
        let parts: Vec<&str> = path.iter().map(String::as_str).collect();
        let rest = match parts.as_slice() {
            ["resource", "metadata", rest @ ..] => rest,
            rest => rest,
        };
        match rest {
            ["name"] => Ok(Field::Name),
            ["description"] => Ok(Field::Description),
            ["labels", key] if !key.is_empty() => Ok(Field::Label((*key).to_string())),
            ["labels"] => Err(err("labels needs a key: labels.KEY or labels[\"KEY\"]", at)),
            _ => Err(err(
                format!("unknown field {:?} (supported: {FIELDS})", path.join(".")),
                at,
            )),
        }
    }

    /// After `name(`.
    fn call(&mut self, name: &str, at: usize) -> Result<Expr, QueryError> {
        self.deeper()?;
        let mut args = Vec::new();
        if !self.eat(&Tok::RParen) {
            loop {
                args.push((self.here(), self.value()?));
                if self.eat(&Tok::RParen) {
                    break;
                }
                self.expect(&Tok::Comma, "\",\" or \")\"")?;
            }
        }
        self.depth -= 1;
        let arity = |n: usize| -> Result<(), QueryError> {
            if args.len() == n {
                Ok(())
            } else {
                Err(err(
                    format!("{name}() takes {n} argument(s), got {}", args.len()),
                    at,
                ))
            }
        };
        match name {
            "hasPrefix" | "equals" => {
                arity(2)?;
                let mut it = args.into_iter().map(|(_, v)| v);
                let (Some(a), Some(b)) = (it.next(), it.next()) else {
                    return Err(err(format!("{name}() takes 2 arguments"), at));
                };
                Ok(if name == "equals" {
                    Expr::Eq(a, b)
                } else {
                    Expr::HasPrefix(a, b)
                })
            }
            "exists" => {
                arity(1)?;
                match args.pop() {
                    Some((_, Value::Field(Field::Label(k)))) => Ok(Expr::Exists(k)),
                    Some((a, _)) => Err(err("exists() takes a label: exists(labels.KEY)", a)),
                    None => Err(err("exists() takes 1 argument", at)),
                }
            }
            "search" => {
                if args.is_empty() {
                    return Err(err("search() takes at least one keyword", at));
                }
                let mut kws = Vec::new();
                for (a, v) in args {
                    match v {
                        Value::Str(s) => kws.push(s),
                        Value::Field(_) => return Err(err("search() takes quoted keywords", a)),
                    }
                }
                Ok(Expr::Search(kws))
            }
            _ => Err(err(
                format!("unknown function {name:?} (supported: {FUNCS})"),
                at,
            )),
        }
    }
}

/// Whether every keyword appears, case-insensitively, in the name, the
/// description, or a label's key or value (no keywords: true).
pub fn matches_search(
    keywords: &[String],
    name: &str,
    description: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let fields: Vec<String> = [name, description]
        .into_iter()
        .chain(labels.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]))
        .map(str::to_lowercase)
        .collect();
    keywords.iter().all(|kw| {
        let kw = kw.to_lowercase();
        fields.iter().any(|f| f.contains(&kw))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
    use super::*;

    fn check(q: &str, name: &str, l: &BTreeMap<String, String>) -> bool {
        let r = Resource {
            name,
            description: "Azure Redis in East US",
            labels: l,
        };
        Expr::parse(q).unwrap().eval(&r)
    }

    #[test]
    fn the_forms_of_teleport_queries() {
        let l = labels(&[
            ("env", "dev"),
            ("team", "x"),
            ("teleport.dev/origin", "cloud"),
        ]);
        assert!(check(r#"labels["env"] == "dev""#, "db1", &l));
        assert!(check(r#"labels.env == "dev""#, "db1", &l));
        assert!(check(r#"resource.metadata.labels.env == "dev""#, "db1", &l));
        assert!(!check(r#"labels.env != "dev""#, "db1", &l));
        assert!(check(r#"name == "db1""#, "db1", &l));
        assert!(check(r#"resource.metadata.name == "db1""#, "db1", &l));
        assert!(check(r#"hasPrefix(name, "db")"#, "db1", &l));
        assert!(!check(r#"hasPrefix(name, "web")"#, "db1", &l));
        assert!(check(r#"exists(labels.team)"#, "db1", &l));
        assert!(!check(r#"exists(labels["missing"])"#, "db1", &l));
        assert!(check(
            r#"labels["teleport.dev/origin"] == "cloud""#,
            "db1",
            &l
        ));
        assert!(check(r#"labels.missing == """#, "db1", &l));
        assert!(check(r#"!(labels.env == "prod")"#, "db1", &l));
        assert!(check(r#"!!exists(labels.env)"#, "db1", &l));
        assert!(check(
            r#"labels.env == "prod" || labels.team == "x" && name != "other""#,
            "db1",
            &l
        ));
        // && binds tighter than ||.
        assert!(check(r#"true || false && false"#, "db1", &l));
        assert!(!check(r#"(true || false) && false"#, "db1", &l));
        assert!(check(r#"equals(labels.env, "dev")"#, "db1", &l));
        assert!(check(r#"search("EAST", "redis")"#, "db1", &l));
        assert!(!check(r#"search("west")"#, "db1", &l));
        assert!(check(
            r#"description == 'Azure Redis in East US'"#,
            "db1",
            &l
        ));
    }

    #[test]
    fn the_tree_is_what_was_written() {
        assert_eq!(
            Expr::parse(r#"!a.b == "x""#).unwrap_err().message,
            format!("unknown field \"a.b\" (supported: {FIELDS})")
        );
        assert_eq!(
            Expr::parse(r#"labels.env == "dev" && !exists(labels.x)"#).unwrap(),
            Expr::And(
                Box::new(Expr::Eq(
                    Value::Field(Field::Label("env".into())),
                    Value::Str("dev".into())
                )),
                Box::new(Expr::Not(Box::new(Expr::Exists("x".into()))))
            )
        );
    }

    #[test]
    fn errors_name_what_is_supported() {
        let e = Expr::parse(r#"contains(name, "x")"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown function \"contains\"") && e.contains("hasPrefix"),
            "{e}"
        );
        let e = Expr::parse(r#"kind == "db""#).unwrap_err().to_string();
        assert!(
            e.contains("unknown field \"kind\"") && e.contains("labels.KEY"),
            "{e}"
        );
        let e = Expr::parse(r#"labels.env = "dev""#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("==") && e.contains("character 12"), "{e}");
        let e = Expr::parse(r#"name"#).unwrap_err().to_string();
        assert!(e.contains("not a condition"), "{e}");
        let e = Expr::parse(r#"hasPrefix(name)"#).unwrap_err().to_string();
        assert!(e.contains("takes 2 argument"), "{e}");
        let e = Expr::parse(r#"exists(name)"#).unwrap_err().to_string();
        assert!(e.contains("exists(labels.KEY)"), "{e}");
        let e = Expr::parse("名前 = x").unwrap_err();
        assert_eq!(e.at, 3, "{e}");
        let e = Expr::parse(r#"name == "a" name == "b""#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("&& or ||"), "{e}");
    }

    /// Hostile and broken input: an error each time, never a panic or a
    /// stack overflow.
    #[test]
    fn hostile_input_is_refused_without_panicking() {
        let deep_parens = format!("{}true{}", "(".repeat(100_000), ")".repeat(100_000));
        let deep_not = format!("{}true", "!".repeat(3000));
        let deep_calls = format!("{}\"x\"{}", "hasPrefix(".repeat(3000), ")".repeat(3000));
        let long_or = vec!["true"; 500].join(" || ");
        let cases: Vec<String> = vec![
            String::new(),
            " ".into(),
            "(".into(),
            ")".into(),
            "()".into(),
            "!".into(),
            "&&".into(),
            "name ==".into(),
            "== \"x\"".into(),
            "labels[".into(),
            "labels[\"".into(),
            "labels[\"x\"".into(),
            "labels[name]".into(),
            "labels.".into(),
            "labels".into(),
            "hasPrefix(".into(),
            "hasPrefix(name,".into(),
            "hasPrefix(name \"x\")".into(),
            "\"unterminated".into(),
            "\"bad \\q escape\"".into(),
            "name == \"a\" &".into(),
            "name == \"a\" |".into(),
            "name == \"a\")".into(),
            "((name == \"a\")".into(),
            "\u{0}\u{1b}[2J".into(),
            "名前 == \"x\"".into(),
            "name == \"é\" && \u{202e}".into(),
            "true == true".into(),
            "search(name)".into(),
            "search()".into(),
            deep_parens,
            deep_not,
            deep_calls,
            "x".repeat(MAX_LEN + 1),
        ];
        for q in &cases {
            let r = std::panic::catch_unwind(|| Expr::parse(q));
            let r = r.unwrap_or_else(|_| panic!("panicked on {:?}", &q[..q.len().min(40)]));
            assert!(r.is_err(), "accepted {:?}", &q[..q.len().min(40)]);
        }
        assert!(Expr::parse(&long_or).is_ok());
        // Every error points inside the query (or just past its end).
        for q in &cases {
            if let Err(e) = Expr::parse(q) {
                assert!(e.at <= q.len().max(MAX_LEN), "{q:?}: {e:?}");
            }
        }
    }
}
