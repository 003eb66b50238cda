//! The soak with faults, two minutes of it (`hs2_proxy::soak`): the real proxy binary in front of three
//! mock impalads under Hue-like, impyla-like (ours and the real impyla), vanishing, slow, large and stalled clients, while backends
//! are killed, drained, shut down, dropped and reloaded away and back, and the proxy restarts once.
//! Fails on any misrouted call, growth without bound, client failures outside the faults, or a proxy view
//! that disagrees with the mocks at the end. `scripts/soak.sh` runs the 30-minute version.

use std::path::PathBuf;

use hs2_proxy::soak::{self, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "two minutes: scripts/test.sh runs it with the other long tests"]
async fn a_two_minute_soak_with_faults_passes() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("soak");
    let mut settings = Settings::for_minutes(2.0, PathBuf::from(env!("CARGO_BIN_EXE_hs2-proxy")), out.clone());
    // Real impyla joins the load: scripts/test.sh runs scripts/setup-python.sh before the long tests.
    let python = soak::python::venv_python(std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(python.exists(), "{} is missing: run scripts/setup-python.sh", python.display());
    settings.python = Some(python);
    let report = soak::run(&settings).await.expect("the soak runs");
    let markdown = report.markdown();
    std::fs::write(out.join("report.md"), &markdown).unwrap();
    std::fs::write(out.join("samples.csv"), report.csv()).unwrap();
    println!("{markdown}");
    assert!(report.passed(), "{markdown}\n(logs, config and samples in {})", out.display());
}

/// The audit the soak relies on is live: a call for a session another mock holds is counted as
/// misrouted; the proxy's own lookup shape (seqid 1) at the wrong mock is not; a stale handle is not.
#[tokio::test]
async fn the_audit_tells_misrouted_calls_from_lookups_and_stale_handles() {
    use hs2_proxy::hs2::handle::HandleId;
    use hs2_proxy::hs2::rpc::hs2::TGetInfoType;
    const CLI_DBMS_VER: TGetInfoType = TGetInfoType::CLI_DBMS_VER;
    use hs2_proxy::hs2client::{ClientAuth, Hs2Client};
    let cluster = soak::cluster::Cluster::start(2).await.unwrap();
    let auth = ClientAuth::Plain { user: "u".into(), password: "p".into() };
    let (a, b) = (cluster.mock(0).unwrap(), cluster.mock(1).unwrap());
    let mut on_a = Hs2Client::connect(a.local_addr(), &auth).await.unwrap();
    let session = on_a.open_session(Some("u"), &[]).await.unwrap();
    let mut on_b = Hs2Client::connect(b.local_addr(), &auth).await.unwrap();
    // The proxy's lookup: GetInfo with seqid 1 at every backend.
    assert!(on_b.get_info(&session, CLI_DBMS_VER).await.is_err());
    on_b.set_next_seqid(soak::cluster::CLIENT_SEQIDS);
    assert!(on_b.get_info(&HandleId::random(), CLI_DBMS_VER).await.is_err(), "stale");
    assert!(on_b.execute(&session, "select 1").await.is_err(), "misrouted");
    cluster.audit_now();
    let f = cluster.audit_figures();
    assert_eq!((f.unknown, f.lookups_elsewhere, f.stale, f.misrouted), (3, 1, 1, 1), "{f:?}");
    assert!(f.examples[0].starts_with("ExecuteStatement #1001"), "{:?}", f.examples);
    cluster.stop().await;
}
