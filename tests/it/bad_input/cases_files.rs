//! Refused configuration files (`--config`) and endpoint files (`endpoint apply`).

use super::{case, temp_file, Case};

/// `--config` and `endpoint apply` given a file with one mistake each.
pub(super) fn config_files(configs: &Configs) -> Vec<Case> {
    let config_case = |path: &str, expect: &str| case(&["--config", path, "stats"], 1, expect);
    let apply_case = |path: &str, expect: &str| case(&["endpoint", "apply", path], 1, expect);
    vec![
        // Configuration files.
        config_case(&configs.unknown_key, "unknown setting `concurency`"),
        config_case(
            &configs.wrong_type,
            "setting `concurrency` must be a whole number",
        ),
        config_case(
            &configs.number_for_duration,
            "setting `lease` must be a duration string",
        ),
        config_case(
            &configs.bad_duration,
            "setting `poll_interval` must be a duration",
        ),
        config_case(
            &configs.string_for_bool,
            "setting `enabled` must be true or false",
        ),
        config_case(
            &configs.table_for_list,
            "setting `allow_networks` must be a string or an array of strings",
        ),
        config_case(&configs.syntax, "TOML parse error at line 1"),
        config_case(
            "/nonexistent/hookrelay.toml",
            "cannot read the configuration file",
        ),
        apply_case(&configs.apply_unknown_field, "unknown field `urls`"),
        apply_case(
            &configs.apply_wrong_type,
            "key `max_in_flight`: invalid type: a string, expected i32",
        ),
        apply_case(&configs.apply_bad_url, "only http:// and https://"),
        apply_case(&configs.apply_twice, "declared twice"),
        apply_case(
            &configs.apply_bad_shaping,
            "include_fields must be an array of field names",
        ),
        apply_case(&configs.apply_unset_env, "which is not set"),
        apply_case(
            &configs.apply_second_bad,
            "endpoint \"second\": unknown signature scheme",
        ),
    ]
}

/// Configuration files, each with one mistake.
pub(super) struct Configs {
    unknown_key: String,
    wrong_type: String,
    number_for_duration: String,
    bad_duration: String,
    string_for_bool: String,
    table_for_list: String,
    syntax: String,
    apply_unknown_field: String,
    apply_wrong_type: String,
    apply_bad_url: String,
    apply_twice: String,
    apply_bad_shaping: String,
    apply_unset_env: String,
    apply_second_bad: String,
}

impl Configs {
    pub(super) fn write() -> Configs {
        let endpoint = |extra: &str| {
            format!("[[endpoints]]\nname = \"first\"\nurl = \"https://example.com/\"\n{extra}\n")
        };
        Configs {
            unknown_key: temp_file("unknown.toml", "concurency = 8\n"),
            wrong_type: temp_file("type.toml", "concurrency = \"eight\"\n"),
            number_for_duration: temp_file("number.toml", "lease = 60\n"),
            bad_duration: temp_file("duration.toml", "poll_interval = \"soon\"\n"),
            string_for_bool: temp_file("bool.toml", "enabled = \"yes\"\n"),
            table_for_list: temp_file("list.toml", "allow_networks = { a = 1 }\n"),
            syntax: temp_file("syntax.toml", "concurrency = \n"),
            apply_unknown_field: temp_file("a1.toml", &endpoint("urls = 1")),
            apply_wrong_type: temp_file("a2.toml", &endpoint("max_in_flight = \"8\"")),
            apply_bad_url: temp_file(
                "a3.toml",
                "[[endpoints]]\nname = \"first\"\nurl = \"ftp://example.com/\"\n",
            ),
            apply_twice: temp_file("a4.toml", &format!("{}{}", endpoint(""), endpoint(""))),
            apply_bad_shaping: temp_file("a5.toml", &endpoint("include_fields = [1]")),
            apply_unset_env: temp_file(
                "a6.toml",
                &endpoint("secret_env = \"HOOKRELAY_TEST_SURELY_UNSET\""),
            ),
            apply_second_bad: temp_file(
                "a7.toml",
                &format!(
                    "{}[[endpoints]]\nname = \"second\"\nurl = \"https://example.com/\"\nsignature_scheme = \"md5\"\n",
                    endpoint("")
                ),
            ),
        }
    }
}
