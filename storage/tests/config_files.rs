//! Every file in conf/ is a configuration its binary accepts as it stands (`--check-config`),
//! and the same file with an unknown key is refused at start with a message naming it.

mod support;

use std::path::Path;
use std::process::Command;

use support::workspace_bin;

/// The binary that reads each file of conf/.
fn binary_for(file: &str) -> Option<&'static str> {
    match file {
        "pd.toml" => Some("zankv-pd"),
        "storage.toml" => Some("zankv-storage"),
        "proxy.toml" => Some("zankv-proxy"),
        _ => None,
    }
}

fn check(bin: &str, config: &Path) -> (bool, String) {
    let out = Command::new(workspace_bin(bin))
        .arg("--config")
        .arg(config)
        .arg("--check-config")
        .output()
        .expect("run the binary");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn every_file_in_conf_loads_and_unknown_keys_are_refused() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&conf).expect("conf/ exists") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bin = binary_for(&name)
            .unwrap_or_else(|| panic!("conf/{name}: no binary reads it; name it in binary_for"));
        let (ok, text) = check(bin, &path);
        assert!(ok, "{bin} refuses conf/{name}: {text}");
        assert!(text.contains("the configuration is valid"), "{text}");
        // The same file with a key no version of it has.
        let bad = dir.path().join(&name);
        let original = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&bad, format!("no_such_setting = 1\n{original}")).unwrap();
        let (ok, text) = check(bin, &bad);
        assert!(!ok, "{bin} accepted an unknown key: {text}");
        assert!(text.contains("no_such_setting"), "{bin}: {text}");
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen, ["pd.toml", "proxy.toml", "storage.toml"]);
}
