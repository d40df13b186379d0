//! The systemd unit is well-formed: `systemd-analyze verify` accepts it without a warning, with
//! the binary path pointed at this build (its reload sequence runs in `tests/upgrade.rs`).

use std::process::Command;

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/exoclaw.service"
    ))
    .unwrap();
    assert!(unit.contains("/usr/local/bin/exoclaw"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exoclaw.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/exoclaw", env!("CARGO_BIN_EXE_exoclaw")),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is installed (.ci/run installs the systemd package)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {:?}\n{said}",
        verify.status
    );
}
