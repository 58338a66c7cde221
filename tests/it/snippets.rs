//! Runs README.md's signature-verification snippets in their own languages. The code is taken
//! from README.md itself (the fenced block after a `<!-- snippet: NAME -->` marker), so the
//! documentation is what gets tested; a small driver appended here feeds it cases as JSON.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::json;

use crate::support::Request;

/// One request for a snippet to judge.
#[derive(Debug, Clone)]
pub struct Case {
    pub scheme: &'static str,
    pub secret: String,
    /// Lower-case names, as Node gives them.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Case {
    /// The request as a receiver got it, to be checked with `secret`.
    pub fn from_request(scheme: &'static str, secret: &str, request: &Request) -> Case {
        let headers = request
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
            .collect();
        Case {
            scheme,
            secret: secret.to_string(),
            headers,
            body: request.body.to_vec(),
        }
    }

    /// The same request with another secret.
    pub fn with_secret(&self, secret: &str) -> Case {
        Case {
            secret: secret.to_string(),
            ..self.clone()
        }
    }

    /// The same request with one byte of the body changed.
    pub fn tampered(&self) -> Case {
        let mut body = self.body.clone();
        let i = body.iter().rposition(|b| b.is_ascii_digit()).unwrap_or(0);
        body[i] = if body[i] == b'9' { b'8' } else { body[i] + 1 };
        Case {
            body,
            ..self.clone()
        }
    }
}

/// A language that can run README snippets.
pub struct Language {
    pub name: &'static str,
    program: &'static str,
    extension: &'static str,
    snippet: &'static str,
    driver: &'static str,
}

const NODE_DRIVER: &str = r#"
const cases = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
const verifiers = { hookrelay: verifyHookrelay, 'body-hex': verifyBodyHex, standard: verifyStandard };
console.log(JSON.stringify(cases.map((c) =>
  verifiers[c.scheme](c.secret, c.headers, Buffer.from(c.body, 'base64')))));
"#;

// The Django document's function, called as its text describes: the payload as a string, the
// signature and timestamp headers. It throws when the lengths differ; that counts as refused.
const DJANGO_DRIVER: &str = r#"
const cases = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
console.log(JSON.stringify(cases.map((c) => {
  try {
    return verifyWebhook(c.secret, Buffer.from(c.body, 'base64').toString('utf8'),
      c.headers['x-webhook-signature'], c.headers['x-webhook-timestamp']);
  } catch (e) {
    return false;
  }
})));
"#;

const PYTHON_DRIVER: &str = r#"
import json, sys
cases = json.load(open(sys.argv[1]))
verifiers = {"hookrelay": verify_hookrelay, "body-hex": verify_body_hex, "standard": verify_standard}
print(json.dumps([verifiers[c["scheme"]](c["secret"], c["headers"], base64.b64decode(c["body"]))
                  for c in cases]))
"#;

const RUBY_DRIVER: &str = r#"
require 'json'
cases = JSON.parse(File.read(ARGV[0]))
verifiers = { 'hookrelay' => method(:verify_hookrelay), 'body-hex' => method(:verify_body_hex),
              'standard' => method(:verify_standard) }
puts JSON.generate(cases.map { |c| verifiers[c['scheme']].call(c['secret'], c['headers'], Base64.decode64(c['body'])) })
"#;

pub const NODE: Language = Language {
    name: "Node.js",
    program: "node",
    extension: "js",
    snippet: "node",
    driver: NODE_DRIVER,
};
pub const DJANGO_NODE: Language = Language {
    name: "Node.js (the Django document's verifyWebhook)",
    program: "node",
    extension: "js",
    snippet: "django-node",
    driver: DJANGO_DRIVER,
};
pub const PYTHON: Language = Language {
    name: "Python",
    program: "python3",
    extension: "py",
    snippet: "python",
    driver: PYTHON_DRIVER,
};
pub const RUBY: Language = Language {
    name: "Ruby",
    program: "ruby",
    extension: "rb",
    snippet: "ruby",
    driver: RUBY_DRIVER,
};

/// The README snippets that implement every scheme.
pub const ALL_SCHEMES: [Language; 3] = [NODE, PYTHON, RUBY];

/// The code of the fenced block after `<!-- snippet: NAME -->` in README.md.
pub fn readme_snippet(name: &str) -> String {
    let readme = include_str!("../../README.md");
    let marker = format!("<!-- snippet: {name} -->");
    let start = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"));
    let mut lines = readme[start + marker.len()..].lines().skip(1);
    let fence = lines.next().expect("a fenced block after the marker");
    assert!(
        fence.starts_with("```"),
        "{marker} is followed by {fence:?}"
    );
    let code: Vec<&str> = lines.take_while(|l| *l != "```").collect();
    assert!(!code.is_empty(), "{marker}: empty block");
    code.join("\n") + "\n"
}

/// Says (on the real stderr, past the test harness's capture) that a language is skipped.
fn announce_skip(language: &Language) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {} snippet not run, `{}` is not installed",
        language.name,
        language.program
    );
}

impl Language {
    /// Whether the runtime is installed.
    pub fn available(&self) -> bool {
        Command::new(self.program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// What the README snippet says about each case (true: accepted), or `None` (announced)
    /// when the runtime is missing.
    pub fn judge(&self, cases: &[Case]) -> Option<Vec<bool>> {
        if !self.available() {
            announce_skip(self);
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "hookrelay-snippet-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join(format!("verify.{}", self.extension));
        let code = readme_snippet(self.snippet) + self.driver;
        std::fs::write(&script, code).unwrap();
        let input: Vec<_> = cases
            .iter()
            .map(|c| {
                json!({"scheme": c.scheme, "secret": c.secret, "headers": c.headers,
                       "body": BASE64.encode(&c.body)})
            })
            .collect();
        let input_file = dir.join("cases.json");
        std::fs::write(&input_file, serde_json::to_vec(&input).unwrap()).unwrap();
        let out = Command::new(self.program)
            .arg(&script)
            .arg(&input_file)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "{} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let verdicts: Vec<bool> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{} printed {:?}: {e}",
                self.name,
                String::from_utf8_lossy(&out.stdout)
            )
        });
        assert_eq!(verdicts.len(), cases.len());
        Some(verdicts)
    }

    /// Asserts the snippet accepts exactly the cases marked `true`.
    pub fn assert_verdicts(&self, cases: &[(Case, bool, &str)]) {
        let only: Vec<Case> = cases.iter().map(|(c, _, _)| c.clone()).collect();
        let Some(got) = self.judge(&only) else {
            return;
        };
        for ((case, want, what), got) in cases.iter().zip(got) {
            assert_eq!(
                got,
                *want,
                "{}: {what} ({} scheme) should be {}",
                self.name,
                case.scheme,
                if *want { "accepted" } else { "refused" }
            );
        }
    }
}
