//! Seeds from our own encoder: a call, a success reply and an error reply for every method of the IDL,
//! with handles, status and statement where the method table says they are; a few transport and config
//! inputs. Bytes captured from real peers are the other half of the corpus (`scripts/fuzz-seeds.sh`).

use hs2_proxy::hs2::handle::{Guid, HandleId, Secret};
use hs2_proxy::hs2::idl::{self, HandlePaths};
use hs2_proxy::hs2::reply::{error_reply, invalid_session_text, required_fields};
use hs2_proxy::thrift::framing::{frame_header, PlainCredentials, SaslMessage, SaslStatus};
use hs2_proxy::thrift::value::{encode_message, Struct, Value};
use hs2_proxy::thrift::{MessageHeader, MessageKind};

/// One seed: target, file name, bytes (control prefix included).
pub type Seed = (&'static str, String, Vec<u8>);

/// Sets the value at `path`, creating (or replacing with) structs on the way.
pub fn set_at(s: &mut Struct, path: &[i16], v: Value) {
    let Some((id, rest)) = path.split_first() else { return };
    if rest.is_empty() {
        s.fields.retain(|(i, _)| i != id);
        s.fields.push((*id, v));
        return;
    }
    let idx = match s.fields.iter().position(|(i, f)| i == id && matches!(f, Value::Struct(_))) {
        Some(i) => i,
        None => {
            s.fields.retain(|(i, _)| i != id);
            s.fields.push((*id, Value::Struct(Struct::new())));
            s.fields.len() - 1
        }
    };
    if let Value::Struct(inner) = &mut s.fields[idx].1 {
        set_at(inner, rest, v);
    }
}

fn put_handle(body: &mut Struct, paths: Option<HandlePaths>, id: &HandleId) {
    if let Some(p) = paths {
        set_at(body, p.guid, Value::Bytes(id.guid.0.to_vec()));
        set_at(body, p.secret, Value::Bytes(id.secret.0.to_vec()));
    }
}

fn handle(n: u8) -> HandleId {
    HandleId { guid: Guid([n; 16]), secret: Secret([n ^ 0x5a; 16]) }
}

/// A call of `m` with its handles (and statement) filled in.
pub fn call(m: &idl::MethodSpec, seqid: i32) -> Vec<u8> {
    let mut body = Struct::new().with(1, required_fields(m.request, 0).into_value());
    put_handle(&mut body, m.request_session, &handle(1));
    put_handle(&mut body, m.request_operation, &handle(2));
    match m.name {
        "ExecuteStatement" => set_at(&mut body, &[1, 2], Value::string("select id from range(3)")),
        "ExecutePlannedStatement" => set_at(&mut body, &[1, 1, 2], Value::string("select 1")),
        _ => {}
    }
    encode_message(&MessageHeader::new(m.name, MessageKind::Call, seqid), &body)
}

/// A success reply of `m` carrying the new handles its table entry names.
pub fn success(m: &idl::MethodSpec, seqid: i32) -> Vec<u8> {
    let mut body = Struct::new().with(0, required_fields(m.response, 0).into_value());
    if let Some(s) = m.reply_status {
        set_at(&mut body, s.code, Value::I32(0));
    }
    put_handle(&mut body, m.reply_session, &handle(3));
    put_handle(&mut body, m.reply_operation, &handle(4));
    encode_message(&MessageHeader::new(m.name, MessageKind::Reply, seqid), &body)
}

fn with_ctl(ctl: &[u8], msg: &[u8]) -> Vec<u8> {
    [ctl, msg].concat()
}

fn method_seeds(out: &mut Vec<Seed>) {
    for (i, m) in idl::METHODS.iter().enumerate() {
        let seq = i as i32 + 1;
        let (c, r) = (call(m, seq), success(m, seq));
        let err = error_reply(m.name, seq, &invalid_session_text(&Guid([1; 16])));
        out.push(("request_parse", format!("own-{}", m.name), c.clone()));
        out.push(("value_roundtrip", format!("own-{}-call", m.name), c.clone()));
        out.push(("value_roundtrip", format!("own-{}-reply", m.name), r.clone()));
        // Captures window 6..10: the request handle paths; 0..7: the reply status and handles.
        out.push(("scanner_splits", format!("own-{}-call", m.name), with_ctl(&[0, 0x46, i as u8, 3], &c)));
        out.push(("scanner_splits", format!("own-{}-reply", m.name), with_ctl(&[1, 0x70, i as u8, 0], &r)));
        out.push(("scanner_splits", format!("own-{}-error", m.name), with_ctl(&[1, 0x70, 7, 1], &err)));
        let text = b"Invalid session id: 0101010101010101:0101010101010101";
        out.push(("error_reply", format!("own-{}", m.name), with_ctl(&[i as u8, seq as u8, 0, 0, 0, 5, 0], text)));
    }
    let unknown = idl::METHODS.len() as u8;
    out.push((
        "error_reply",
        "own-unknown".into(),
        with_ctl(&[unknown, 1, 0, 0, 0, 2, 0], b"Frobnicate\0no such method"),
    ));
}

fn transport_seeds(out: &mut Vec<Seed>) {
    let open = idl::method("OpenSession").map(|m| call(m, 1)).unwrap_or_default();
    let start = SaslMessage::new(SaslStatus::Start, b"PLAIN").encode();
    let plain = SaslMessage::new(SaslStatus::Complete, &PlainCredentials::encode("alice", "secret")).encode();
    let framed = [&frame_header(open.len())[..], &open].concat();
    out.push(("sasl", "own-plain".into(), with_ctl(&[3, 1, 0], &[start.clone(), plain.clone()].concat())));
    out.push(("deframer", "own-framed".into(), with_ctl(&[10, 2, 0], &framed)));
    out.push(("deframer", "own-unframed".into(), with_ctl(&[11, 3, 0], &open)));
    for (name, first) in [("unframed", open.clone()), ("framed", framed), ("sasl", start)] {
        out.push(("sniff", format!("own-{name}"), first));
    }
    out.push(("sniff", "own-http".into(), b"POST /cliservice HTTP/1.1\r\n".to_vec()));
    out.push(("sniff", "own-tls".into(), vec![0x16, 3, 1, 0, 0xc8, 1]));
    out.push(("http_auth", "own-basic".into(), b"\x00Basic YWxpY2U6czNjcmV0".to_vec()));
    out.push(("http_auth", "own-cookie".into(), b"\x04alice\xffimpala.auth=junk; other=1".to_vec()));
}

fn config_seeds(out: &mut Vec<Seed>) {
    let snippets = [
        ("backends", "listen = \"0.0.0.0:21050\"\nbackends = [\"a:21050\", { addr = \"b:21050\", weight = 3 }]\n"),
        ("durations", "[pool]\nwait_timeout = \"250ms\"\n[sessions]\ndisconnected_grace = \"2m\"\n[health]\ninterval = \"1s\"\nrise = 2\nfall = 3\n"),
        ("limits", "[limits]\nmax_request_bytes = 1024\nmax_depth = 8\nmax_container_len = 10\nmax_frame_bytes = 4096\n"),
        ("files", "[backend_auth]\ntransport = \"sasl\"\nuser = \"svc\"\npassword_file = \"/pw\"\n[admin]\ntoken_file = \"/t\"\n"),
        ("http", "[http]\nlisten = \"127.0.0.1:28000\"\npath = \"/cliservice\"\ncookie_max_age = \"1h\"\n[tls]\ncert_file = \"/c\"\nkey_file = \"/k\"\n"),
        ("upstream", "backends = [{ addr = \"h:28000\", transport = \"http\", http_path = \"/x\", tls = true, tls_verify = false, metrics_url = \"http://h:25000/jsonmetrics\" }]\n"),
    ];
    for (name, text) in snippets {
        out.push(("config", format!("own-{name}"), text.as_bytes().to_vec()));
    }
    let example = include_str!("../../docker/hs2-proxy.toml");
    out.push(("config", "own-docker-example".into(), example.as_bytes().to_vec()));
}

/// Every seed of our own.
pub fn own_seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    method_seeds(&mut out);
    transport_seeds(&mut out);
    config_seeds(&mut out);
    out
}
