//! Runs the framework guides (docs/django.md, docs/rails.md): their code blocks are taken from
//! the markdown by the fence's info string, so the guides are what gets tested.
//!
//! - ```` ```python file=store/models.py ```` saves the block as that file of the project;
//! - ```` ```sh run ```` runs it with bash in the project directory;
//! - ```` ```python shell ```` runs it with `python manage.py shell -c`;
//! - ```` ```ruby run ```` runs it with ruby in the project directory.
//!
//! A block with none of these fails the test: every block of a guide is run.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{binary, TestDb};

/// One fenced block of a guide.
#[derive(Debug)]
pub struct Block {
    pub lang: String,
    pub action: Action,
    pub code: String,
    /// 1-based line of the opening fence, for messages.
    pub line: usize,
}

/// What to do with a block.
#[derive(Debug, PartialEq)]
pub enum Action {
    File(String),
    Run,
    Shell,
}

/// The fenced blocks of `markdown`, in order.
pub fn blocks(markdown: &str, guide: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = markdown.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let mut words = info.split_whitespace();
        let lang = words.next().unwrap_or_default().to_string();
        let action = match words.next() {
            Some("run") => Action::Run,
            Some("shell") => Action::Shell,
            Some(w) if w.starts_with("file=") => Action::File(w["file=".len()..].to_string()),
            other => panic!(
                "{guide}:{}: a code block marked {other:?}: mark it file=PATH, run or shell, \
                 so the test suite runs it",
                i + 1
            ),
        };
        let mut code = String::new();
        for (_, body) in lines.by_ref() {
            if body.starts_with("```") {
                break;
            }
            code.push_str(body);
            code.push('\n');
        }
        out.push(Block {
            lang,
            action,
            code,
            line: i + 1,
        });
    }
    out
}

/// A guide's contents, from the repository.
pub fn read_guide(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A fresh, empty directory for a guide's project.
pub fn project_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hookrelay-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The environment a guide's commands run in: the database for hookrelay (`DATABASE_URL`)
/// and for libpq clients (`PG*`), with `hookrelay` and `extra_path` first on PATH.
pub fn environment(db: &TestDb, extra_path: &[&Path]) -> Vec<(String, String)> {
    let url = url::Url::parse(&db.url).unwrap();
    let mut path: Vec<PathBuf> = extra_path.iter().map(|p| p.to_path_buf()).collect();
    path.push(binary().parent().unwrap().to_path_buf());
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let mut env = vec![
        ("DATABASE_URL".into(), db.url.clone()),
        ("HOOKRELAY_DATABASE_URL".into(), db.url.clone()),
        ("HOOKRELAY_LOG".into(), "warn".into()),
        ("PGHOST".into(), url.host_str().unwrap().to_string()),
        ("PGPORT".into(), url.port().unwrap_or(5432).to_string()),
        ("PGUSER".into(), url.username().to_string()),
        (
            "PGDATABASE".into(),
            url.path().trim_start_matches('/').to_string(),
        ),
        (
            "PATH".into(),
            std::env::join_paths(path)
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        ),
    ];
    if let Some(password) = url.password() {
        env.push(("PGPASSWORD".into(), password.to_string()));
    }
    env
}

/// Runs `program args` in `dir` with `env`; panics with its output unless it succeeds.
/// Returns stdout.
pub fn run(
    dir: &Path,
    env: &[(String, String)],
    program: &str,
    args: &[&str],
    what: &str,
) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env_remove("HOOKRELAY_CONFIG")
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs a guide's blocks in order in `dir`; returns what the commands printed.
pub fn run_guide(guide: &str, dir: &Path, env: &[(String, String)]) -> String {
    let mut said = String::new();
    for block in blocks(&read_guide(guide), guide) {
        let what = format!("docs/{guide}:{}", block.line);
        let code = block.code.as_str();
        said += &match (&block.action, block.lang.as_str()) {
            (Action::File(path), _) => {
                write_file(dir, path, code);
                continue;
            }
            (Action::Run, "sh") => run(dir, env, "bash", &["-euo", "pipefail", "-c", code], &what),
            (Action::Run, "ruby") => run(dir, env, "ruby", &["-e", code], &what),
            (Action::Shell, "python") => run(
                dir,
                env,
                "python",
                &["manage.py", "shell", "-c", code],
                &what,
            ),
            (action, lang) => panic!("{what}: cannot run a {lang} block as {action:?}"),
        };
    }
    said
}

/// Writes a `file=` block into the project.
pub fn write_file(dir: &Path, path: &str, code: &str) {
    let target = dir.join(path);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(&target, code).unwrap();
}

/// An interpreter the guides need, installed by `.ci/run`; a clear failure when missing.
pub fn installed(path: &str, what: &str) -> PathBuf {
    let path = PathBuf::from(path);
    assert!(
        path.exists(),
        "{} is missing: {what} (.ci/run installs it)",
        path.display()
    );
    path
}

#[test]
fn every_block_of_every_guide_says_how_it_is_run() {
    for guide in ["django.md", "rails.md"] {
        let all = blocks(&read_guide(guide), guide);
        assert!(all.len() > 10, "{guide} has its code blocks");
    }
}
