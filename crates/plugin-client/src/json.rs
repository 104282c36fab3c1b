//! The client's one JSON reader and writer: small enough to ship in the Wasm (no serde_json, no
//! float parsing), complete enough for any answer the server sends. The reader checks the whole
//! grammar and decodes string escapes (`\"`, `\\`, `\/`, `\b\f\n\r\t`, `\uXXXX` and surrogate
//! pairs); numbers are kept as their text, since the client never computes with them (the JS side
//! gets the browser's own `JSON.parse` of the same text).

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number as written (already checked against the JSON grammar).
    Number(String),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    /// A member of an object (the last one wins, as in `JSON.parse`).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// `obj.a.b` as a string.
    pub fn str_at(&self, path: &[&str]) -> Option<&str> {
        path.iter().try_fold(self, |v, k| v.get(k))?.as_str()
    }
}

/// Parses one JSON text (whitespace around it allowed, nothing after it).
pub fn parse(text: &str) -> Option<Value> {
    let mut p = Parser { s: text.as_bytes(), i: 0, depth: 0 };
    let v = p.value()?;
    p.ws();
    (p.i == p.s.len()).then_some(v)
}

/// Nesting deeper than this is refused rather than risking the (small) Wasm stack.
const MAX_DEPTH: u32 = 64;

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: u32,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        self.ws();
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self, w: &str, v: Value) -> Option<Value> {
        let end = self.i + w.len();
        (self.s.get(self.i..end)? == w.as_bytes()).then(|| {
            self.i = end;
            v
        })
    }

    fn value(&mut self) -> Option<Value> {
        self.ws();
        match self.peek()? {
            b'{' => self.nested(Self::object),
            b'[' => self.nested(Self::array),
            b'"' => self.string().map(Value::String),
            b't' => self.word("true", Value::Bool(true)),
            b'f' => self.word("false", Value::Bool(false)),
            b'n' => self.word("null", Value::Null),
            _ => self.number(),
        }
    }

    fn nested(&mut self, f: fn(&mut Self) -> Option<Value>) -> Option<Value> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn object(&mut self) -> Option<Value> {
        let mut members = Vec::new();
        if self.eat(b'}') {
            return Some(Value::Object(members));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return None;
            }
            let key = self.string()?;
            if !self.eat(b':') {
                return None;
            }
            members.push((key, self.value()?));
            if self.eat(b'}') {
                return Some(Value::Object(members));
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    fn array(&mut self) -> Option<Value> {
        let mut items = Vec::new();
        if self.eat(b']') {
            return Some(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            if self.eat(b']') {
                return Some(Value::Array(items));
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    fn digits(&mut self) -> usize {
        let from = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - from
    }

    fn number(&mut self) -> Option<Value> {
        let from = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        // Only ASCII was consumed, so this slice is valid UTF-8.
        Some(Value::Number(String::from_utf8_lossy(&self.s[from..self.i]).into_owned()))
    }

    fn hex4(&mut self) -> Option<u32> {
        let mut n = 0;
        for _ in 0..4 {
            let d = (*self.s.get(self.i)? as char).to_digit(16)?;
            n = n * 16 + d;
            self.i += 1;
        }
        Some(n)
    }

    /// A string starting at the opening quote. The input is a `&str`, so the bytes between
    /// escapes are valid UTF-8 and are copied as they are.
    fn string(&mut self) -> Option<String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let b = self.peek()?;
            self.i += 1;
            match b {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return None,
                _ => out.push(b),
            }
        }
    }

    /// After `\u`: one code unit, or a surrogate pair. A lone surrogate (which `JSON.parse`
    /// accepts but a Rust string cannot hold) becomes U+FFFD.
    fn unicode_escape(&mut self) -> Option<char> {
        let hi = self.hex4()?;
        if (0xD800..0xDC00).contains(&hi) && self.s.get(self.i..self.i + 2) == Some(b"\\u") {
            let save = self.i;
            self.i += 2;
            let lo = self.hex4()?;
            if (0xDC00..0xE000).contains(&lo) {
                return char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00));
            }
            self.i = save;
        }
        Some(char::from_u32(hi).unwrap_or('\u{FFFD}'))
    }
}

/// Appends `s` as a JSON string literal, escaped exactly as serde_json does.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[(c as usize) >> 4] as char);
                out.push(HEX[(c as usize) & 15] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends an integer (without `format!`, which would pull in the formatting machinery).
pub fn write_int(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    let mut digits = [0u8; 20];
    let mut len = 0;
    let mut m = n.unsigned_abs();
    loop {
        digits[len] = b'0' + (m % 10) as u8;
        len += 1;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    for &d in digits[..len].iter().rev() {
        out.push(d as char);
    }
}

/// Builds a JSON object from string and integer members, in order.
#[derive(Default)]
pub struct Object(String);

impl Object {
    fn key(mut self, k: &str) -> Self {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        write_str(&mut self.0, k);
        self.0.push(':');
        self
    }

    pub fn str(self, k: &str, v: &str) -> Self {
        let mut o = self.key(k);
        write_str(&mut o.0, v);
        o
    }

    pub fn int(self, k: &str, v: i64) -> Self {
        let mut o = self.key(k);
        write_int(&mut o.0, v);
        o
    }

    /// A string member, left out for `None` (or an empty string).
    pub fn opt_str(self, k: &str, v: Option<&str>) -> Self {
        match v.filter(|v| !v.is_empty()) {
            Some(v) => self.str(k, v),
            None => self,
        }
    }

    /// A member whose value is already JSON text (a nested object, `null`).
    pub fn raw(self, k: &str, json: &str) -> Self {
        let mut o = self.key(k);
        o.0.push_str(json);
        o
    }

    /// An integer, or `null` for `None`.
    pub fn opt_int(self, k: &str, v: Option<i64>) -> Self {
        match v {
            Some(v) => self.int(k, v),
            None => {
                let mut o = self.key(k);
                o.0.push_str("null");
                o
            }
        }
    }

    pub fn finish(mut self) -> String {
        if self.0.is_empty() {
            self.0.push('{');
        }
        self.0.push('}');
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    #[test]
    fn reads_every_kind_of_value() {
        let v = parse(r#" {"a": [1, -2.5e3, 0, true, false, null, {}], "b": {"c": "d"}, "e": []} "#).unwrap();
        assert_eq!(
            v.get("a"),
            Some(&Value::Array(vec![
                Value::Number("1".into()),
                Value::Number("-2.5e3".into()),
                Value::Number("0".into()),
                Value::Bool(true),
                Value::Bool(false),
                Value::Null,
                Value::Object(vec![]),
            ]))
        );
        assert_eq!(v.str_at(&["b", "c"]), Some("d"));
        assert_eq!(v.get("e"), Some(&Value::Array(vec![])));
    }

    #[test]
    fn decodes_string_escapes() {
        let cases = [
            (r#""say \"hi\"""#, "say \"hi\""),
            (r#""back\\slash""#, "back\\slash"),
            (r#""a\/b""#, "a/b"),
            (r#""\b\f\n\r\t""#, "\u{8}\u{c}\n\r\t"),
            (r#""caf\u00e9 \u00E9""#, "café é"),
            (r#""\u20ac""#, "€"),
            (r#""\ud83d\ude00 smile""#, "😀 smile"),
            (r#""lone \ud83d here""#, "lone \u{FFFD} here"),
            (r#""lone \ude00""#, "lone \u{FFFD}"),
            (r#""\u0000""#, "\0"),
            ("\"unescaped ünïcödé 😀\"", "unescaped ünïcödé 😀"),
            (r#""\\\"""#, "\\\""),
        ];
        for (json, want) in cases {
            assert_eq!(parse(json), Some(s(want)), "{json}");
        }
    }

    #[test]
    fn refuses_what_json_parse_refuses() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "{a:1}",
            "'x'",
            "\"\\x\"",
            "\"\\u12\"",
            "\"tab\there\"",
            "\"open",
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "nul",
            "{} {}",
            "<html>Bad gateway</html>",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(parse(&"[".repeat(100)), None, "too deep");
        assert!(parse(&format!("{}{}", "[".repeat(60), "]".repeat(60))).is_some());
    }

    #[test]
    fn writes_strings_as_serde_json_does() {
        for text in ["plain", "quote \" and \\", "\n\r\t\u{8}\u{c}", "\u{1}\u{1f}\u{7f}", "café 😀 </script>", ""] {
            let mut out = String::new();
            write_str(&mut out, text);
            assert_eq!(out, serde_json::to_string(text).unwrap());
            assert_eq!(parse(&out), Some(s(text)), "round trip of {text:?}");
        }
    }

    #[test]
    fn writes_integers_and_objects() {
        for n in [0, 7, -7, 1299, i64::MAX, i64::MIN] {
            let mut out = String::new();
            write_int(&mut out, n);
            assert_eq!(out, n.to_string());
        }
        assert_eq!(Object::default().finish(), "{}");
        assert_eq!(Object::default().str("a", "x\"").int("b", -1).finish(), r#"{"a":"x\"","b":-1}"#);
    }
}
