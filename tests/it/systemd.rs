//! The unit files in systemd/: valid for systemd, and sandboxed to an exposure of 2.0 or less.

use std::path::Path;
use std::process::Command;

use crate::support::binary;

/// Copies a unit into `dir` as `name`, pointing ExecStart at the binary these tests built
/// (systemd-analyze verify checks that the command exists and is executable).
fn install(unit: &str, dir: &Path, name: &str) -> std::path::PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(unit);
    let text = std::fs::read_to_string(&source).expect("unit file");
    assert!(text.contains("ExecStart=/usr/local/bin/hookrelay run"));
    let text = text.replace("/usr/local/bin/hookrelay", &binary().display().to_string());
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn exposure(output: &str) -> f64 {
    let line = output
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure line in:\n{output}"));
    line.split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no score in {line}"))
}

#[test]
fn units_verify_and_are_tightly_sandboxed() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: systemd-analyze is not installed (.ci/run installs it)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("hookrelay-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let units = [
        install("hookrelay.service", &dir, "hookrelay.service"),
        // A template is verified through an instance of it.
        install("hookrelay@.service", &dir, "hookrelay@a.service"),
    ];
    for unit in &units {
        let text = std::fs::read_to_string(unit).unwrap();
        for needed in [
            "Type=notify",
            "WatchdogSec=",
            "Restart=on-failure",
            "EnvironmentFile=",
            "DynamicUser=yes",
        ] {
            assert!(text.contains(needed), "{} lacks {needed}", unit.display());
        }
        let verify = Command::new("systemd-analyze")
            .arg("verify")
            .arg(unit)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
        assert!(
            verify.status.success() && said.trim().is_empty(),
            "{}: {said}",
            unit.display()
        );
        let security = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(unit)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&security.stdout).into_owned();
        let score = exposure(&report);
        assert!(
            score <= 2.0,
            "{} exposure {score} > 2.0:\n{report}",
            unit.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
