//! Derives the HS2 method table from our own IDL (`idl/*.thrift`) with no external tool.
//!
//! For every service method it finds, by type, where the request carries a session or operation handle
//! and where the reply returns a new one, and it writes the schema of every struct so that the proxy can
//! synthesize replies that fill each required field. Output: `$OUT_DIR/idl.rs`, included by `src/hs2/idl.rs`.
//! The grammar is the subset documented in `idl/README.md`; anything else is a build error.
//! It also writes names for every method, field id and enum value (`names`, `fields`, `enums`), and each
//! method's effect on the proxy's tables, so that the glue never types an HS2 number or method name.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

const IDL_FILES: &[&str] = &["idl/thrift.thrift", "idl/hs2.thrift", "idl/impala.thrift"];
/// The one method annotation the grammar knows: what a successful call does to the proxy's tables beyond
/// what the handles in its reply already say (a new session or operation handle is found by type).
const EFFECT_ANNOTATION: &str = "hs2proxy.effect";
const EFFECTS: &[(&str, &str)] = &[("closes_session", "ClosesSession"), ("closes_operation", "ClosesOperation")];
const SESSION_HANDLE: &str = "TSessionHandle";
const OPERATION_HANDLE: &str = "TOperationHandle";
const HANDLE_ID: &str = "THandleIdentifier";
const STATUS: &str = "TStatus";
/// How deep inside a request or reply struct a handle is looked for (ExecutePlannedStatement nests one).
const MAX_HANDLE_DEPTH: usize = 3;

#[derive(Clone, Debug)]
enum Ty {
    Base(String),
    Named(String),
    List(Box<Ty>),
    Set(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
}

#[derive(Debug)]
struct Field {
    id: i16,
    required: bool,
    ty: Ty,
    name: String,
}

#[derive(Debug)]
struct StructDef {
    kind: &'static str,
    fields: Vec<Field>,
}

#[derive(Debug)]
struct Method {
    service: String,
    name: String,
    resp: String,
    req: String,
    /// `(hs2proxy.effect = "...")` after the method, if any.
    effect: Option<String>,
}

#[derive(Default)]
struct Idl {
    structs: BTreeMap<String, StructDef>,
    enums: BTreeMap<String, Vec<(String, i32)>>,
    typedefs: BTreeMap<String, Ty>,
    methods: Vec<Method>,
}

fn main() {
    let mut idl = Idl::default();
    for file in IDL_FILES {
        println!("cargo:rerun-if-changed={file}");
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let tokens = tokenize(&strip_comments(&text));
        Parser { t: tokens, i: 0, file }.parse(&mut idl);
    }
    let out = generate(&idl);
    let dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(Path::new(&dir).join("idl.rs"), out).expect("write idl.rs");
}

fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('/', Some('/')) | ('#', _) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                out.push(' ');
            }
            ('"', _) => {
                out.push('"');
                for c in chars.by_ref() {
                    out.push(c);
                    if c == '"' {
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut in_string = false;
    for c in text.chars() {
        if in_string {
            cur.push(c);
            if c == '"' {
                tokens.push(std::mem::take(&mut cur));
                in_string = false;
            }
            continue;
        }
        if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' {
            cur.push(c);
            continue;
        }
        if !cur.is_empty() {
            tokens.push(std::mem::take(&mut cur));
        }
        if c == '"' {
            cur.push(c);
            in_string = true;
        } else if !c.is_whitespace() {
            tokens.push(c.to_string());
        }
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    tokens
}

struct Parser<'a> {
    t: Vec<String>,
    i: usize,
    file: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> &str {
        self.t.get(self.i).map(String::as_str).unwrap_or("")
    }

    fn next(&mut self) -> String {
        let tok = self.t.get(self.i).cloned().unwrap_or_else(|| self.fail("unexpected end of file"));
        self.i += 1;
        tok
    }

    fn expect(&mut self, want: &str) {
        let got = self.next();
        if got != want {
            self.fail(&format!("expected `{want}`, found `{got}`"));
        }
    }

    fn fail(&self, msg: &str) -> ! {
        let near: Vec<&str> = self.t.iter().skip(self.i.saturating_sub(5)).take(10).map(String::as_str).collect();
        panic!("{}: {msg} near `{}`", self.file, near.join(" "))
    }

    fn skip_separator(&mut self) {
        if self.peek() == "," || self.peek() == ";" {
            self.i += 1;
        }
    }

    fn parse(&mut self, idl: &mut Idl) {
        while self.i < self.t.len() {
            match self.next().as_str() {
                "namespace" => {
                    self.next();
                    self.next();
                }
                "include" => {
                    self.next();
                }
                "typedef" => {
                    let ty = self.ty();
                    let name = self.next();
                    idl.typedefs.insert(name, ty);
                }
                "enum" => {
                    let name = self.next();
                    let values = self.enum_body();
                    idl.enums.insert(name, values);
                }
                kind @ ("struct" | "union" | "exception") => {
                    let kind = match kind {
                        "struct" => "Struct",
                        "union" => "Union",
                        _ => "Exception",
                    };
                    let name = self.next();
                    let fields = self.fields();
                    idl.structs.insert(name, StructDef { kind, fields });
                }
                "service" => self.service(idl),
                other => self.fail(&format!("unsupported declaration `{other}`")),
            }
        }
    }

    fn enum_body(&mut self) -> Vec<(String, i32)> {
        self.expect("{");
        let mut values = Vec::new();
        while self.peek() != "}" {
            let name = self.next();
            self.expect("=");
            let v = self.next();
            let v = v.parse().unwrap_or_else(|_| self.fail(&format!("enum value `{v}` is not an integer")));
            values.push((name, v));
            self.skip_separator();
        }
        self.expect("}");
        values
    }

    fn fields(&mut self) -> Vec<Field> {
        self.expect("{");
        let mut fields = Vec::new();
        while self.peek() != "}" {
            let id = self.next();
            let id = id.parse().unwrap_or_else(|_| self.fail(&format!("field id `{id}` is not an integer")));
            self.expect(":");
            let required = match self.next().as_str() {
                "required" => true,
                "optional" => false,
                other => self.fail(&format!("write `required` or `optional`, found `{other}`")),
            };
            let ty = self.ty();
            let name = self.next();
            if self.peek() == "=" {
                self.i += 1;
                self.default_value();
            }
            self.skip_separator();
            fields.push(Field { id, required, ty, name });
        }
        self.expect("}");
        fields
    }

    /// Defaults are ignored: synthesized replies fill required fields with zero values.
    fn default_value(&mut self) {
        let open = self.next();
        let close = match open.as_str() {
            "{" => "}",
            "[" => "]",
            _ => return,
        };
        while self.next() != close {}
    }

    fn ty(&mut self) -> Ty {
        let name = self.next();
        let strip = |s: &str| s.rsplit('.').next().unwrap_or(s).to_string();
        match name.as_str() {
            "list" | "set" => {
                self.expect("<");
                let inner = Box::new(self.ty());
                self.expect(">");
                if name == "list" {
                    Ty::List(inner)
                } else {
                    Ty::Set(inner)
                }
            }
            "map" => {
                self.expect("<");
                let k = Box::new(self.ty());
                self.expect(",");
                let v = Box::new(self.ty());
                self.expect(">");
                Ty::Map(k, v)
            }
            "bool" | "byte" | "i8" | "i16" | "i32" | "i64" | "double" | "string" | "binary" => Ty::Base(name),
            _ => Ty::Named(strip(&name)),
        }
    }

    fn service(&mut self, idl: &mut Idl) {
        let service = self.next();
        if self.peek() == "extends" {
            self.i += 1;
            self.next();
        }
        self.expect("{");
        while self.peek() != "}" {
            let resp = match self.ty() {
                Ty::Named(n) => n,
                other => self.fail(&format!("method result {other:?} is not a struct")),
            };
            let name = self.next();
            self.expect("(");
            self.expect("1");
            self.expect(":");
            let req = match self.ty() {
                Ty::Named(n) => n,
                other => self.fail(&format!("method argument {other:?} is not a struct")),
            };
            self.next();
            self.expect(")");
            let effect = self.method_annotations(&name);
            self.skip_separator();
            idl.methods.push(Method { service: service.clone(), name, resp, req, effect });
        }
        self.expect("}");
    }
}

impl Parser<'_> {
    /// `(key = "value", ...)` after a method: only [`EFFECT_ANNOTATION`] is known; anything else is an error,
    /// so that a misspelt annotation cannot silently drop an effect.
    fn method_annotations(&mut self, method: &str) -> Option<String> {
        if self.peek() != "(" {
            return None;
        }
        self.i += 1;
        let mut effect = None;
        while self.peek() != ")" {
            let key = self.next();
            self.expect("=");
            let value = self.next();
            let value = value.trim_matches('"').to_string();
            if key != EFFECT_ANNOTATION {
                self.fail(&format!("{method}: unknown annotation `{key}`"));
            }
            if !EFFECTS.iter().any(|(k, _)| *k == value) {
                self.fail(&format!("{method}: unknown effect `{value}`"));
            }
            effect = Some(value);
            self.skip_separator();
        }
        self.expect(")");
        effect
    }
}

impl Idl {
    fn resolve<'a>(&'a self, ty: &'a Ty) -> &'a Ty {
        match ty {
            Ty::Named(n) => self.typedefs.get(n).map(|t| self.resolve(t)).unwrap_or(ty),
            _ => ty,
        }
    }

    fn struct_def(&self, name: &str) -> &StructDef {
        self.structs.get(name).unwrap_or_else(|| panic!("IDL: struct `{name}` is used but not defined"))
    }

    /// The field id inside `parent` whose type is `child`.
    fn field_of_type(&self, parent: &str, child: &str) -> i16 {
        let def = self.struct_def(parent);
        def.fields
            .iter()
            .find(|f| matches!(self.resolve(&f.ty), Ty::Named(n) if n == child))
            .map(|f| f.id)
            .unwrap_or_else(|| panic!("IDL: `{parent}` has no field of type `{child}`"))
    }

    /// Paths (from `root`) of the first struct-typed field named `target`, depth-first in field order.
    fn find_path(&self, root: &str, target: &str, depth: usize) -> Option<Vec<i16>> {
        if depth == 0 {
            return None;
        }
        for f in &self.struct_def(root).fields {
            if let Ty::Named(n) = self.resolve(&f.ty) {
                if n == target {
                    return Some(vec![f.id]);
                }
                if self.structs.contains_key(n) && n != SESSION_HANDLE && n != OPERATION_HANDLE {
                    if let Some(mut rest) = self.find_path(n, target, depth - 1) {
                        rest.insert(0, f.id);
                        return Some(rest);
                    }
                }
            }
        }
        None
    }
}

fn generate(idl: &Idl) -> String {
    let ids = |handle: &str| {
        let id_field = idl.field_of_type(handle, HANDLE_ID);
        let guid = field_id(idl, HANDLE_ID, "guid");
        let secret = field_id(idl, HANDLE_ID, "secret");
        (id_field, guid, secret)
    };
    let session_ids = ids(SESSION_HANDLE);
    let op_ids = ids(OPERATION_HANDLE);
    let handle_paths = |prefix: Option<Vec<i16>>, (id, guid, secret): (i16, i16, i16)| match prefix {
        None => "None".to_string(),
        Some(p) => {
            let at = |leaf: i16| {
                let mut v = p.clone();
                v.extend([id, leaf]);
                format!("&{v:?}")
            };
            format!("Some(HandlePaths {{ guid: {}, secret: {} }})", at(guid), at(secret))
        }
    };
    let mut out = String::from("// @generated by build.rs from idl/*.thrift. Do not edit.\n\n");
    out.push_str("pub static METHODS: &[MethodSpec] = &[\n");
    for (index, m) in idl.methods.iter().enumerate() {
        let in_args = |path: Option<Vec<i16>>| path.map(|p| [vec![1], p].concat());
        let in_result = |path: Option<Vec<i16>>| path.map(|p| [vec![0], p].concat());
        let req_session = in_args(idl.find_path(&m.req, SESSION_HANDLE, MAX_HANDLE_DEPTH));
        let req_op = in_args(idl.find_path(&m.req, OPERATION_HANDLE, MAX_HANDLE_DEPTH));
        let reply_session = in_result(idl.find_path(&m.resp, SESSION_HANDLE, 1));
        let reply_op = in_result(idl.find_path(&m.resp, OPERATION_HANDLE, 1));
        let status = idl.find_path(&m.resp, STATUS, 1).map(|p| p[0]);
        let effect = match (&m.effect, &reply_session, &reply_op) {
            (Some(e), _, _) => EFFECTS.iter().find(|(k, _)| k == e).map(|(_, v)| *v).unwrap_or("None"),
            (None, Some(_), _) => "OpensSession",
            (None, None, Some(_)) => "OpensOperation",
            (None, None, None) => "None",
        };
        let status_paths = match status {
            None => "None".to_string(),
            Some(f) => format!(
                "Some(StatusPaths {{ code: &[0, {f}, {}], message: &[0, {f}, {}] }})",
                field_id(idl, STATUS, "statusCode"),
                field_id(idl, STATUS, "errorMessage")
            ),
        };
        writeln!(
            out,
            "    MethodSpec {{ index: {index}, name: {:?}, service: {:?}, request: {:?}, response: {:?}, request_session: {}, \
             request_operation: {}, reply_session: {}, reply_operation: {}, status_field: {:?}, reply_status: {}, \
             effect: Effect::{effect} }},",
            m.name,
            m.service,
            m.req,
            m.resp,
            handle_paths(req_session, session_ids),
            handle_paths(req_op, op_ids),
            handle_paths(reply_session, session_ids),
            handle_paths(reply_op, op_ids),
            status,
            status_paths,
        )
        .ok();
    }
    out.push_str("];\n\npub fn method_index(name: &str) -> Option<usize> {\n    match name {\n");
    for (i, m) in idl.methods.iter().enumerate() {
        writeln!(out, "        {:?} => Some({i}),", m.name).ok();
    }
    out.push_str("        _ => None,\n    }\n}\n\npub static STRUCTS: &[StructSpec] = &[\n");
    for (name, def) in &idl.structs {
        writeln!(out, "    StructSpec {{ name: {name:?}, kind: StructKind::{}, fields: &[", def.kind).ok();
        for f in &def.fields {
            writeln!(
                out,
                "        FieldSpec {{ id: {}, name: {:?}, required: {}, ty: {} }},",
                f.id,
                f.name,
                f.required,
                ty_expr(idl, &f.ty)
            )
            .ok();
        }
        out.push_str("    ] },\n");
    }
    out.push_str("];\n\npub static ENUMS: &[EnumSpec] = &[\n");
    for (name, values) in &idl.enums {
        writeln!(out, "    EnumSpec {{ name: {name:?}, values: &{values:?} }},").ok();
    }
    out.push_str("];\n");
    generate_constants(idl, &mut out);
    out
}

/// Names for every number and name the glue needs, so that none is typed by hand: `names::OPEN_SESSION`,
/// `fields::t_status::STATUS_CODE`, `enums::t_status_code::ERROR_STATUS`.
fn generate_constants(idl: &Idl, out: &mut String) {
    out.push_str("\n/// Method names.\npub mod names {\n");
    for m in &idl.methods {
        writeln!(out, "    pub const {}: &str = {:?};", upper_snake(&m.name), m.name).ok();
    }
    out.push_str("}\n\n/// Field ids, per struct.\n#[allow(dead_code)]\npub mod fields {\n");
    for (name, def) in &idl.structs {
        writeln!(out, "    pub mod {} {{", lower_snake(name)).ok();
        for f in &def.fields {
            writeln!(out, "        pub const {}: i16 = {};", upper_snake(&f.name), f.id).ok();
        }
        out.push_str("    }\n");
    }
    out.push_str("}\n\n/// Enum values, per enum.\n#[allow(dead_code)]\npub mod enums {\n");
    for (name, values) in &idl.enums {
        writeln!(out, "    pub mod {} {{", lower_snake(name)).ok();
        for (variant, v) in values {
            writeln!(out, "        pub const {variant}: i32 = {v};").ok();
        }
        out.push_str("    }\n");
    }
    out.push_str("}\n");
}

/// `TGetInfoType` -> `t_get_info_type`; `statusCode` -> `status_code`.
fn lower_snake(name: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower = i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(*c);
        }
    }
    out
}

fn upper_snake(name: &str) -> String {
    lower_snake(name).to_ascii_uppercase()
}

fn field_id(idl: &Idl, parent: &str, name: &str) -> i16 {
    idl.struct_def(parent)
        .fields
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.id)
        .unwrap_or_else(|| panic!("IDL: `{parent}` has no field `{name}`"))
}

fn ty_expr(idl: &Idl, ty: &Ty) -> String {
    match idl.resolve(ty) {
        Ty::Base(b) => match b.as_str() {
            "bool" => "Ty::Bool".into(),
            "byte" | "i8" => "Ty::Byte".into(),
            "i16" => "Ty::I16".into(),
            "i32" => "Ty::I32".into(),
            "i64" => "Ty::I64".into(),
            "double" => "Ty::Double".into(),
            _ => "Ty::Bytes".into(),
        },
        Ty::Named(n) if idl.enums.contains_key(n) => format!("Ty::Enum({n:?})"),
        Ty::Named(n) if idl.structs.contains_key(n) => format!("Ty::Struct({n:?})"),
        Ty::Named(n) => panic!("IDL: type `{n}` is not defined"),
        Ty::List(t) => format!("Ty::List(&{})", ty_expr(idl, t)),
        Ty::Set(t) => format!("Ty::Set(&{})", ty_expr(idl, t)),
        Ty::Map(k, v) => format!("Ty::Map(&{}, &{})", ty_expr(idl, k), ty_expr(idl, v)),
    }
}
