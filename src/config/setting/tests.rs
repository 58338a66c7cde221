//! The command line, the configuration file, the library defaults and the README's settings
//! table all say the same about every setting.

use std::collections::BTreeSet;

use clap::{CommandFactory, Parser};

use super::*;
use crate::cli::{Cli, Command};
use crate::config::WorkerConfig;

/// Environment variables that are inputs of one command, not settings of the process: the
/// file cannot hold them (and `HOOKRELAY_CONFIG` names the file itself).
const NOT_SETTINGS: &[&str] = &[
    "HOOKRELAY_CONFIG",
    "HOOKRELAY_CONSOLE_ADDR",
    "HOOKRELAY_CONSOLE_TOKEN",
    "HOOKRELAY_DEMO_ONCE",
    "HOOKRELAY_ENDPOINT_SECRET",
    "HOOKRELAY_NEW_SECRET",
    "HOOKRELAY_ROTATION_GRACE",
    "HOOKRELAY_VERIFY_SCHEME",
    "HOOKRELAY_VERIFY_SECRET",
    "HOOKRELAY_VERIFY_TOLERANCE",
];

/// Every argument of every command that has an environment variable, as (env, arg).
fn args_with_env() -> Vec<(String, clap::Arg)> {
    fn walk(command: &clap::Command, out: &mut Vec<(String, clap::Arg)>) {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                out.push((env.to_string_lossy().into_owned(), arg.clone()));
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut command = Cli::command();
    command.build();
    let mut out = Vec::new();
    walk(&command, &mut out);
    out
}

#[test]
fn every_flag_with_an_environment_variable_is_a_setting_and_back() {
    let mut seen = BTreeSet::new();
    for (env, arg) in args_with_env() {
        seen.insert(env.clone());
        if NOT_SETTINGS.contains(&env.as_str()) {
            continue;
        }
        let setting = ALL
            .iter()
            .find(|s| s.env == env)
            .unwrap_or_else(|| panic!("{env} is no setting: add it to config::setting"));
        assert_eq!(arg.get_long(), Some(setting.flag), "{env}");
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let expected: Vec<String> = setting.default.iter().map(|d| d.to_string()).collect();
        // A list setting without a default is an empty list on the command line.
        assert_eq!(defaults, expected, "default of --{}", setting.flag);
    }
    for setting in ALL {
        assert!(
            seen.contains(setting.env),
            "{} is a file key without a flag",
            setting.key
        );
    }
    for env in NOT_SETTINGS {
        assert!(seen.contains(*env), "{env} is no longer a flag's variable");
    }
}

#[test]
fn names_follow_one_rule() {
    for setting in ALL {
        assert_eq!(
            setting.env,
            format!("HOOKRELAY_{}", setting.key.to_uppercase()),
            "{}",
            setting.key
        );
        // --allow-network is given once per network; its key and variable hold a list.
        if setting.key != "allow_networks" {
            assert_eq!(setting.flag, setting.key.replace('_', "-"));
        }
    }
}

#[test]
fn every_default_parses_as_its_kind() {
    for setting in ALL {
        let Some(text) = setting.default else {
            continue;
        };
        let parsed = match setting.kind {
            Kind::Text => Ok(()),
            Kind::Duration => duration(text).map(drop),
            Kind::Count => whole::<u64>(text).map(drop),
            Kind::Bool => text.parse::<bool>().map(drop).map_err(|e| e.to_string()),
            Kind::Durations => crate::pipeline::retry::RetrySchedule::parse(text)
                .map(drop)
                .map_err(|e| e.to_string()),
            Kind::List => Err("a list setting has no default".into()),
        };
        assert_eq!(parsed, Ok(()), "{}", setting.key);
    }
}

#[test]
fn every_range_fits_its_kind_and_holds_its_default() {
    for setting in ALL {
        let fits = matches!(
            (setting.kind, setting.bounds),
            (_, Bounds::Any)
                | (Kind::Count, Bounds::Count(..))
                | (Kind::Duration, Bounds::Millis(..) | Bounds::Secs(..))
        );
        assert!(
            fits,
            "{}: {:?} for a {:?}",
            setting.key, setting.bounds, setting.kind
        );
        let Some(text) = setting.default else {
            continue;
        };
        let value = match setting.kind {
            Kind::Count => Value::Count(whole(text).unwrap()),
            Kind::Duration => Value::Duration(duration(text).unwrap()),
            _ => continue,
        };
        assert_eq!(
            setting.outside(value),
            None,
            "{}'s default {text}",
            setting.key
        );
    }
}

#[test]
fn the_library_defaults_are_the_command_lines() {
    let cli = Cli::try_parse_from(["hookrelay", "run"]).unwrap();
    let Command::Run(args) = &cli.command else {
        panic!("not run");
    };
    let mut from_flags = args.worker_config().unwrap();
    let library = WorkerConfig::default();
    from_flags.worker_id = library.worker_id.clone();
    assert_eq!(format!("{from_flags:?}"), format!("{library:?}"));
    assert_eq!(
        library.metrics_addr,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    assert_eq!(cli.connect_timeout, crate::db::DEFAULT_CONNECT_TIMEOUT);
}

/// The README's `hookrelay run` table: each row's flags, variables and defaults.
fn readme_rows() -> Vec<(String, String, String)> {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("| flag | env | default |")
        .expect("the settings table");
    readme[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<String> = line.split('|').map(|c| c.trim().replace('`', "")).collect();
            (cells[1].clone(), cells[2].clone(), cells[3].clone())
        })
        .collect()
}

#[test]
fn the_readme_table_says_what_the_definitions_do() {
    let rows = readme_rows();
    assert!(rows.len() >= 20, "{rows:?}");
    for (flags, envs, defaults) in rows {
        let defaults: Vec<&str> = defaults.split(", ").collect();
        for (i, flag) in flags.split(", ").enumerate() {
            let flag = flag.trim_start_matches("--");
            let setting = ALL
                .iter()
                .find(|s| s.flag == flag)
                .unwrap_or_else(|| panic!("README names --{flag}, which is no setting"));
            assert!(envs.split(", ").any(|e| e == setting.env), "{flag}: {envs}");
            let said = defaults.get(i).or(defaults.first()).unwrap();
            let said = said.split_whitespace().next().unwrap_or("");
            match setting.default {
                Some("false") => assert_eq!(said, "off", "--{flag}"),
                Some(default) => assert_eq!(said, default, "--{flag}"),
                None => {}
            }
        }
    }
}
