//! fchmd over TLS to a real Mosquitto that requires client certificates:
//! the daemon's rustls session (CA file, client certificate and key from the
//! config) gets frames through, and a daemon that does not trust the
//! broker's certificate gets none through and says why.
//!
//! The certificates are made here with `openssl` (a throwaway CA, a server
//! certificate for 127.0.0.1 and a client certificate, all signed by it).
//! An observer watches on a second, plain listener of the same broker.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::daemon::{free_port, Daemon, Mosquitto, Sub};
use common::run_ok;
use fchm::core::container::FrameRef;

fn openssl(dir: &Path, args: &[&str]) {
    let mut c = Command::new("openssl");
    c.current_dir(dir).args(args);
    run_ok(c);
}

/// A CA (`ca.pem`) and, signed by it, `server.pem`/`server.key` for
/// 127.0.0.1 and `client.pem`/`client.key`; plus `other-ca.pem`, a CA that
/// signed nothing here.
fn make_certificates(dir: &Path) {
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=fchm test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ],
        );
    }
    // rustls takes X.509 v3 only: every certificate gets extensions.
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, cn) in [("server", "127.0.0.1"), ("client", "fchmd-tls-cam")] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        let (csr, out) = (format!("{name}.csr"), format!("{name}.pem"));
        let mut sign = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
        ];
        let ext = format!("{name}.ext");
        sign.extend([out.as_str(), "-extfile", ext.as_str()]);
        openssl(dir, &sign);
    }
    // Mosquitto started as root reads its files as the `mosquitto` user.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in std::fs::read_dir(dir).unwrap() {
        let f = f.unwrap().path();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

#[test]
fn frames_cross_a_tls_listener_that_requires_client_certificates() {
    let bundle = common::bundle_dir();
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let c = |f: &str| certs.path().join(f).display().to_string();
    let tls_port = free_port();
    let broker = Mosquitto::start_with(&format!(
        "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        c("ca.pem"),
        c("server.pem"),
        c("server.key")
    ));
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    // A daemon trusting the CA in `ca`, with the client certificate.
    let start = |device: &str, ca: &str| {
        Daemon::start_with_mqtt(
            device,
            &url,
            &bundle,
            "[source]\nspec = \"test-scene\"\nfps = 2.0\n[rate]\nmode = \"gain\"\ngain = 2.0",
            &format!(
                "ca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
                c(ca),
                c("client.pem"),
                c("client.key")
            ),
        )
    };

    // The trusted daemon: frames arrive on the plain listener's observer.
    let feat = Sub::start(broker.port, "fchm/tls-cam/feat", &[]);
    let mut daemon = start("tls-cam", "ca.pem");
    let mut frames = 0;
    while frames < 3 {
        let m = feat
            .next(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("no frame over TLS within 60 s; log:\n{}", daemon.log()));
        let f = FrameRef::parse(&m.payload).expect("a valid frame over TLS");
        assert_eq!(f.header.layer, fchm::core::container::Layer::Machine);
        frames += 1;
    }
    let acc = daemon.stop();
    assert!(
        acc["totals"]["acked"].as_u64().unwrap_or(0) >= 3,
        "acked over TLS: {acc}"
    );

    // A daemon that trusts another CA never completes the handshake.
    let feat = Sub::start(broker.port, "fchm/tls-stranger/feat", &[]);
    let mut stranger = start("tls-stranger", "other-ca.pem");
    assert!(
        feat.next(Duration::from_secs(8)).is_none(),
        "a frame crossed TLS to a broker the daemon must not trust"
    );
    assert!(
        stranger.running(),
        "the daemon must keep running and retrying"
    );
    let log = stranger.log();
    assert!(
        log.to_lowercase().contains("certificate"),
        "the log should say the certificate was refused:\n{log}"
    );
    stranger.kill9();
}
