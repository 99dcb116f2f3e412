//! Role templates: `{{internal.x}}`, `{{external.x}}`, `{{external["x y"]}}`,
//! `{{email.local(...)}}`, `{{regexp.replace(..., "re", "repl")}}`, with a literal prefix
//! and suffix kept around each expanded value.

use regex::Regex;
use resources::trait_names;

use crate::{TemplateError, Traits};

/// A parsed template string: literal text, or prefix + expression + suffix.
#[derive(Debug, Clone)]
pub struct Template {
    prefix: String,
    expr: Option<Expr>,
    suffix: String,
}

#[derive(Debug, Clone)]
enum Expr {
    Literal(String),
    Var {
        namespace: &'static str,
        name: String,
    },
    EmailLocal(Box<Expr>),
    RegexpReplace(Box<Expr>, Regex, String),
}

fn bad(msg: impl Into<String>) -> TemplateError {
    TemplateError::BadParameter(msg.into())
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Dot,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
}

/// The rest of a string literal opened by `quote`: `"` takes backslash escapes, `` ` `` none.
fn string_literal(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    quote: char,
) -> Result<String, TemplateError> {
    let mut s = String::new();
    loop {
        match chars.next() {
            None => return Err(bad("unterminated string literal")),
            Some(c) if c == quote => return Ok(s),
            Some('\\') if quote == '"' => match chars.next() {
                Some('n') => s.push('\n'),
                Some('t') => s.push('\t'),
                Some('"') => s.push('"'),
                Some('\\') => s.push('\\'),
                // Unknown escapes keep the backslash (regexes like "\.").
                Some(other) => {
                    s.push('\\');
                    s.push(other);
                }
                None => return Err(bad("unterminated string literal")),
            },
            Some(ch) => s.push(ch),
        }
    }
}

fn tokenize(src: &str) -> Result<Vec<Tok>, TemplateError> {
    let mut out = Vec::new();
    let mut chars = src.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '.' | '(' | ')' | '[' | ']' | ',' => {
                chars.next();
                out.push(match c {
                    '.' => Tok::Dot,
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '[' => Tok::LBracket,
                    ']' => Tok::RBracket,
                    _ => Tok::Comma,
                });
            }
            '"' | '`' => {
                chars.next();
                out.push(Tok::Str(string_literal(&mut chars, c)?));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut s = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_ascii_alphanumeric() || ch == '_' {
                        s.push(ch);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Ident(s));
            }
            other => return Err(bad(format!("unexpected character {other:?} in expression"))),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn expect(&mut self, want: Tok) -> Result<(), TemplateError> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            got => Err(bad(format!("expected {want:?}, got {got:?}"))),
        }
    }

    fn ident(&mut self) -> Result<String, TemplateError> {
        match self.next() {
            Some(Tok::Ident(s)) => Ok(s),
            got => Err(bad(format!("expected a name, got {got:?}"))),
        }
    }

    fn string(&mut self) -> Result<String, TemplateError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(s),
            got => Err(bad(format!("expected a string literal, got {got:?}"))),
        }
    }

    fn expr(&mut self) -> Result<Expr, TemplateError> {
        let first = match self.next() {
            Some(Tok::Str(s)) => return Ok(Expr::Literal(s)),
            Some(Tok::Ident(s)) => s,
            got => return Err(bad(format!("expected an expression, got {got:?}"))),
        };
        match self.peek() {
            Some(Tok::Dot) => {
                self.pos += 1;
                let second = self.ident()?;
                if self.peek() == Some(&Tok::LParen) {
                    self.pos += 1;
                    return self.call(&first, &second);
                }
                self.variable(&first, second)
            }
            Some(Tok::LBracket) => {
                self.pos += 1;
                let name = self.string()?;
                self.expect(Tok::RBracket)?;
                self.variable(&first, name)
            }
            _ => Err(bad(format!(
                "unsupported variable {first:?}: use internal.<name> or external.<name>"
            ))),
        }
    }

    fn variable(&mut self, namespace: &str, name: String) -> Result<Expr, TemplateError> {
        if matches!(self.peek(), Some(Tok::Dot) | Some(Tok::LBracket)) {
            return Err(bad(format!(
                "variable {namespace}.{name} has too many components"
            )));
        }
        let namespace = match namespace {
            "internal" => {
                if !trait_names::INTERNAL.contains(&name.as_str()) {
                    return Err(bad(format!("unsupported variable \"internal.{name}\"")));
                }
                "internal"
            }
            "external" => "external",
            other => {
                return Err(bad(format!(
                    "unsupported variable namespace {other:?}: use internal or external"
                )))
            }
        };
        if name.is_empty() {
            return Err(bad("empty variable name"));
        }
        Ok(Expr::Var { namespace, name })
    }

    fn call(&mut self, ns: &str, func: &str) -> Result<Expr, TemplateError> {
        let expr = match (ns, func) {
            ("email", "local") => {
                let arg = self.expr()?;
                Expr::EmailLocal(Box::new(arg))
            }
            ("regexp", "replace") => {
                let arg = self.expr()?;
                self.expect(Tok::Comma)?;
                let pattern = self.string()?;
                self.expect(Tok::Comma)?;
                let replacement = self.string()?;
                let re = Regex::new(&pattern)
                    .map_err(|e| bad(format!("invalid regular expression {pattern:?}: {e}")))?;
                Expr::RegexpReplace(Box::new(arg), re, replacement)
            }
            ("regexp", "match") | ("regexp", "not_match") => {
                return Err(bad(format!(
                    "function {ns}.{func} is not allowed in templates"
                )))
            }
            _ => return Err(bad(format!("unsupported function {ns}.{func}"))),
        };
        self.expect(Tok::RParen)?;
        Ok(expr)
    }
}

/// Parses a value that may hold one `{{...}}` expression.
///
/// A value without `{{`/`}}` is a literal. Prefix and suffix may not contain braces.
pub fn parse_template(value: &str) -> Result<Template, TemplateError> {
    let literal = || Template {
        prefix: value.to_string(),
        expr: None,
        suffix: String::new(),
    };
    if !value.contains("{{") && !value.contains("}}") {
        return Ok(literal());
    }
    let malformed = || {
        bad(format!(
            "{value:?} is using template brackets '{{{{' or '}}}}', however expression does not parse, make sure the format is {{{{expression}}}}"
        ))
    };
    let open = value.find("{{").ok_or_else(malformed)?;
    let prefix = &value[..open];
    let rest = &value[open + 2..];
    let close = rest.find("}}").ok_or_else(malformed)?;
    let inner = &rest[..close];
    let suffix = &rest[close + 2..];
    let braces = |s: &str| s.contains('{') || s.contains('}');
    if braces(prefix) || braces(inner) || braces(suffix) || inner.trim().is_empty() {
        return Err(malformed());
    }
    let mut p = Parser {
        toks: tokenize(inner)?,
        pos: 0,
    };
    let expr = p.expr()?;
    if p.pos < p.toks.len() {
        return Err(bad(format!("unexpected trailing input in {value:?}")));
    }
    Ok(Template {
        prefix: prefix.to_string(),
        expr: Some(expr),
        suffix: suffix.to_string(),
    })
}

fn email_local(addr: &str) -> Result<String, TemplateError> {
    let addr = addr.trim();
    // Accept `Name <user@host>` as Go's mail.ParseAddress does.
    let addr = match (addr.rfind('<'), addr.ends_with('>')) {
        (Some(i), true) => &addr[i + 1..addr.len() - 1],
        _ => addr,
    };
    match addr.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(local.to_string())
        }
        _ => Err(bad(format!("failed to parse email address {addr:?}"))),
    }
}

impl Expr {
    fn eval(&self, traits: &Traits) -> Result<Vec<String>, TemplateError> {
        match self {
            Expr::Literal(s) => Ok(vec![s.clone()]),
            Expr::Var { namespace, name } => traits.get(name).cloned().ok_or_else(|| {
                TemplateError::NotFound(format!("variable \"{namespace}.{name}\" not found"))
            }),
            Expr::EmailLocal(inner) => inner.eval(traits)?.iter().map(|v| email_local(v)).collect(),
            Expr::RegexpReplace(inner, re, repl) => Ok(inner
                .eval(traits)?
                .iter()
                .filter(|v| re.is_match(v))
                .map(|v| re.replace_all(v, repl.as_str()).into_owned())
                .collect()),
        }
    }
}

impl Template {
    /// Whether the value holds an expression (vs a plain literal).
    pub fn is_template(&self) -> bool {
        self.expr.is_some()
    }

    /// Expands the template: one output per non-empty value, with prefix and suffix kept.
    /// A missing trait or an empty result is [`TemplateError::NotFound`].
    pub fn interpolate(&self, traits: &Traits) -> Result<Vec<String>, TemplateError> {
        let Some(expr) = &self.expr else {
            return Ok(vec![self.prefix.clone()]);
        };
        let out: Vec<String> = expr
            .eval(traits)?
            .into_iter()
            .filter(|v| !v.is_empty())
            .map(|v| format!("{}{v}{}", self.prefix, self.suffix))
            .collect();
        if out.is_empty() {
            return Err(TemplateError::NotFound(
                "variable interpolation result is empty".to_string(),
            ));
        }
        Ok(out)
    }
}

/// Parses and expands `value` against the user's traits.
pub fn interpolate(value: &str, traits: &Traits) -> Result<Vec<String>, TemplateError> {
    parse_template(value)?.interpolate(traits)
}
