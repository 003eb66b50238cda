//! Real clients through the proxy to the Kerberized Spark Thrift Server of `spark.rs` (shared by this
//! binary, started once): beeline (Java's GSS, which ends SASL with COMPLETE and an empty authzid) and
//! impyla ask for `impala/localhost`; the proxy authenticates to `hive/localhost` as hs2proxy and delegates
//! with `hive.server2.proxy.user`, authorised by `hadoop.proxyuser.hs2proxy.*`. The backend is given by its
//! address only, and the health probe has not run yet (`health.interval = 1h`): the proxy does not know
//! the backend's kind when the sessions open.

use std::process::Command;

use super::clients::{as_user, beeline, data_lines, repo, run, venv_bin};
use super::proxy_clients::{accept_keytab, proxy_config, start_proxy};
use super::spark::spark;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MIT Kerberos, pyspark and impyla (scripts/setup-kerberos.sh, setup-spark.sh, setup-python.sh); run by scripts/test.sh"]
async fn beeline_and_impyla_through_the_proxy_to_kerberized_spark() {
    let spark = spark().await;
    let proxy = start_proxy(spark.addr, proxy_config(&accept_keytab(), "impala/localhost", "hive/localhost", "")).await;
    assert_eq!(proxy.proxy.backends()[0].kind(), None, "no probe yet: the kind is unknown");
    let port = proxy.local_addr.port();
    let url = format!("jdbc:hive2://localhost:{port}/default;principal=impala/localhost@EXAMPLE.TEST");
    let ran = run(beeline(&url, "select current_user()")).await;
    assert!(ran.ok && data_lines(&ran.stdout) == ["alice"], "beeline -> proxy -> Spark:\n{}", ran.both());
    println!(
        "beeline (principal=impala/localhost) -> proxy -> Kerberized Spark: alice in {:.1}s",
        ran.took.as_secs_f64()
    );

    let mut cmd = Command::new(venv_bin("python"));
    cmd.arg(repo().join("tests/kerberos/impyla.py")).args(["service", &port.to_string(), "impala"]);
    let ran = run(as_user(cmd, "bob")).await;
    assert_eq!(ran.stdout.trim(), "bob", "impyla -> proxy -> Spark:\n{}", ran.both());
    println!("impyla (GSSAPI, impala) -> proxy -> Kerberized Spark: bob in {:.1}s", ran.took.as_secs_f64());
    let sessions = proxy.proxy.sessions();
    assert!(sessions.iter().all(|s| s.users.owner == s.users.effective_user), "{sessions:?}");

    // Once a probe has told the kind (Spark answers GetInfo for the all-zero handle: Hive), only
    // hive.server2.proxy.user is sent.
    let mut config = proxy_config(&accept_keytab(), "impala/localhost", "hive/localhost", "");
    config.health.interval = std::time::Duration::from_millis(100);
    let proxy = start_proxy(spark.addr, config).await;
    let detected = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while proxy.proxy.backends()[0].kind().is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    detected.await.expect("a probe detects the kind");
    assert_eq!(proxy.proxy.backends()[0].kind(), Some(hs2_proxy::config::BackendKind::Hive));
    let url =
        format!("jdbc:hive2://localhost:{}/default;principal=impala/localhost@EXAMPLE.TEST", proxy.local_addr.port());
    let ran = run(beeline(&url, "select current_user()")).await;
    assert!(ran.ok && data_lines(&ran.stdout) == ["alice"], "beeline, kind detected:\n{}", ran.both());
}
