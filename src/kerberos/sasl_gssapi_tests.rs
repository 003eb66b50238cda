//! The SASL GSSAPI machines against a fake security context: both final-message shapes, the layer and
//! authzid rules, refusals, and our client against our server. The real library is exercised by
//! `tests/kerberos.rs`.

use super::*;

const ALICE: &str = "alice@EXAMPLE.TEST";

/// A fake context: tokens are labels, wrapping prefixes `W`.
struct Fake {
    /// Acceptor: the token it wants, and what it answers once established.
    server: bool,
    /// Whether establishment yields a last token (mutual authentication).
    mutual: bool,
}

impl SecurityContext for Fake {
    fn step(&mut self, token: &[u8]) -> Result<Step, GssError> {
        let reply = |t: &[u8]| if self.mutual { t.to_vec() } else { vec![] };
        match (self.server, token) {
            (true, b"AP-REQ") => Ok(Step::Established { token: reply(b"AP-REP"), peer: ALICE.into() }),
            (false, b"") if self.mutual => Ok(Step::Continue(b"AP-REQ".to_vec())),
            (false, b"") => Ok(Step::Established { token: b"AP-REQ".to_vec(), peer: "impala/localhost".into() }),
            (false, b"AP-REP") => Ok(Step::Established { token: vec![], peer: "impala/localhost".into() }),
            (_, other) => Err(GssError::Invalid(format!("fake: unexpected token {other:?}"))),
        }
    }

    fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, GssError> {
        Ok([b"W", plain].concat())
    }

    fn unwrap(&mut self, wrapped: &[u8]) -> Result<Vec<u8>, GssError> {
        wrapped.strip_prefix(b"W").map(<[u8]>::to_vec).ok_or_else(|| GssError::Invalid("fake: not wrapped".into()))
    }
}

fn server() -> GssapiServer<Fake> {
    GssapiServer::new(Fake { server: true, mutual: true })
}

fn msg(status: SaslStatus, payload: &[u8]) -> SaslMessage {
    SaslMessage::new(status, payload)
}

fn wrapped(plain: &[u8]) -> Vec<u8> {
    [b"W", plain].concat()
}

/// Runs the server through the context exchange, up to the security-layer offer.
fn to_offer(s: &mut GssapiServer<Fake>) {
    assert_eq!(s.step(&msg(SaslStatus::Ok, b"AP-REQ")).unwrap(), ServerOutput::Send(msg(SaslStatus::Ok, b"AP-REP")));
    // 0x01 = layer none only, then 65536 in three bytes.
    let offer = ServerOutput::Send(msg(SaslStatus::Ok, &wrapped(&[1, 1, 0, 0])));
    assert_eq!(s.step(&msg(SaslStatus::Ok, b"")).unwrap(), offer);
}

fn complete(status: SaslStatus, authzid: &str) -> ServerOutput {
    let ending = Ending { status, authzid: authzid.into() };
    ServerOutput::Complete { reply: msg(SaslStatus::Complete, b""), principal: ALICE.into(), ending }
}

#[test]
fn java_final_message_complete_with_an_empty_authzid() {
    let mut s = server();
    to_offer(&mut s);
    assert_eq!(
        s.step(&msg(SaslStatus::Complete, &wrapped(&[1, 0, 0, 0]))).unwrap(),
        complete(SaslStatus::Complete, "")
    );
    assert!(matches!(s.step(&msg(SaslStatus::Ok, b"")), Err(GssapiError::Protocol(_))), "nothing after the end");
}

#[test]
fn pure_sasl_final_message_ok_with_the_principal_as_authzid() {
    let mut s = server();
    to_offer(&mut s);
    let answer = [&[1u8, 0xff, 0xff, 0xff][..], ALICE.as_bytes()].concat();
    assert_eq!(s.step(&msg(SaslStatus::Ok, &wrapped(&answer))).unwrap(), complete(SaslStatus::Ok, ALICE));
}

#[test]
fn integrity_or_confidentiality_is_refused_with_a_clear_text() {
    for (layer, name) in [(2u8, "auth-int"), (4, "auth-conf"), (6, "auth-conf")] {
        let mut s = server();
        to_offer(&mut s);
        let e = s.step(&msg(SaslStatus::Complete, &wrapped(&[layer, 0, 0, 0]))).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, GssapiError::Layer { .. }) && text.contains(name) && text.contains("QOP auth"), "{text}");
    }
}

#[test]
fn an_authzid_naming_someone_else_is_refused() {
    let mut s = server();
    to_offer(&mut s);
    let e = s.step(&msg(SaslStatus::Ok, &wrapped(b"\x01\0\0\0bob@EXAMPLE.TEST"))).unwrap_err();
    assert!(e.to_string().contains("impala.doas.user"), "{e}");
    assert!(matches!(e, GssapiError::Authzid { ref authzid, .. } if authzid == "bob@EXAMPLE.TEST"));
}

#[test]
fn malformed_answers_and_peer_failures() {
    let mut s = server();
    to_offer(&mut s);
    assert!(matches!(s.step(&msg(SaslStatus::Ok, &wrapped(&[1, 0]))), Err(GssapiError::Protocol(_))));
    let mut s = server();
    to_offer(&mut s);
    assert!(matches!(s.step(&msg(SaslStatus::Ok, b"not wrapped")), Err(GssapiError::Gss(_))));
    let mut s = server();
    assert!(matches!(s.step(&msg(SaslStatus::Ok, b"garbage")), Err(GssapiError::Gss(_))));
    let mut s = server();
    let e = s.step(&msg(SaslStatus::Error, b"client gave up")).unwrap_err();
    assert_eq!(e.to_string(), "authentication refused: client gave up");
    assert!(matches!(server().step(&msg(SaslStatus::Start, b"GSSAPI")), Err(GssapiError::Protocol(_))));
}

#[test]
fn without_a_last_context_token_the_offer_comes_at_once() {
    let mut s = GssapiServer::new(Fake { server: true, mutual: false });
    let offer = ServerOutput::Send(msg(SaslStatus::Ok, &wrapped(&[1, 1, 0, 0])));
    assert_eq!(s.step(&msg(SaslStatus::Ok, b"AP-REQ")).unwrap(), offer);
    assert_eq!(
        s.step(&msg(SaslStatus::Complete, &wrapped(&[1, 0, 0, 0]))).unwrap(),
        complete(SaslStatus::Complete, "")
    );
}

/// Our client and our server, message by message, for both context shapes.
#[test]
fn our_client_against_our_server() {
    for mutual in [true, false] {
        let mut c = GssapiClient::new(Fake { server: false, mutual });
        let mut s = GssapiServer::new(Fake { server: true, mutual });
        let [start, first] = c.start().unwrap();
        assert_eq!(start, msg(SaslStatus::Start, b"GSSAPI"));
        let mut to_server = first;
        let mut rounds = 0;
        let principal = loop {
            rounds += 1;
            assert!(rounds < 10, "no progress");
            let reply = match s.step(&to_server).unwrap() {
                ServerOutput::Send(m) => m,
                ServerOutput::Complete { reply, principal, .. } => {
                    assert_eq!(c.step(&reply).unwrap(), ClientOutput::Done);
                    break principal;
                }
            };
            match c.step(&reply).unwrap() {
                ClientOutput::Send(m) => to_server = m,
                ClientOutput::Done => panic!("client done before the server"),
            }
        };
        assert_eq!(principal, ALICE);
        assert_eq!(to_server.status, SaslStatus::Complete, "our last message is COMPLETE, like Java's");
    }
}

#[test]
fn the_client_refuses_a_server_without_layer_none_and_reports_refusals() {
    let mut c = GssapiClient::new(Fake { server: false, mutual: true });
    c.start().unwrap();
    assert_eq!(c.step(&msg(SaslStatus::Ok, b"AP-REP")).unwrap(), ClientOutput::Send(msg(SaslStatus::Ok, b"")));
    let e = c.step(&msg(SaslStatus::Ok, &wrapped(&[4, 1, 0, 0]))).unwrap_err();
    assert!(e.to_string().contains("server asked for confidentiality"), "{e}");

    let mut c = GssapiClient::new(Fake { server: false, mutual: true });
    c.start().unwrap();
    let e = c.step(&msg(SaslStatus::Bad, b"Request ticket server not found in keytab")).unwrap_err();
    assert_eq!(e.to_string(), "authentication refused: Request ticket server not found in keytab");

    let mut c = GssapiClient::new(Fake { server: false, mutual: true });
    assert!(matches!(c.step(&msg(SaslStatus::Ok, b"")), Err(GssapiError::Protocol(_))), "step before start");
    let mut c = GssapiClient::new(Fake { server: false, mutual: true });
    c.start().unwrap();
    assert!(matches!(c.start(), Err(GssapiError::Protocol(_))));
    assert!(matches!(c.step(&msg(SaslStatus::Complete, b"")), Err(GssapiError::Protocol(_))), "COMPLETE too early");
}
