//! The checks an endpoint's settings pass before the database sees them, with messages that
//! say what to fix. The endpoints triggers check the same for writes made with SQL; these
//! come first so the message can name the flag or command at hand. Secrets and header values
//! are never repeated in a message.

use serde_json::Value;

use super::EndpointError;
use crate::sign::{self, Scheme};

/// The most static headers an endpoint may have, the longest name and the longest value (the
/// endpoints trigger checks the same).
pub const MAX_HEADERS: usize = 20;
pub const MAX_HEADER_NAME_CHARS: usize = 100;
pub const MAX_HEADER_VALUE_CHARS: usize = 4096;

/// Splits a `'Name: value'` argument at its first colon, trimming both sides. Nothing of the
/// argument is repeated in an error: without its colon there is no telling a name from a
/// token.
pub fn parse_header(arg: &str) -> Result<(String, String), EndpointError> {
    let (name, value) = arg.split_once(':').ok_or_else(|| {
        EndpointError::Invalid(
            "the header has no colon: write it as 'Name: value', e.g. 'Authorization: Bearer …' \
             (it is not repeated here, as it may hold a secret)"
                .into(),
        )
    })?;
    let name = name.trim();
    if name.is_empty() {
        return Err(EndpointError::Invalid(
            "a header has no name before its colon: write it as 'Name: value', e.g. \
             'X-Tenant: acme'"
                .into(),
        ));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// Parses an endpoint's `--header 'Name: value'` and checks it as a static header.
pub fn parse_static_header(arg: &str) -> Result<(String, String), EndpointError> {
    let (name, value) = parse_header(arg)?;
    check_header(&name, &value)?;
    Ok((name, value))
}

/// Checks one static header. The header is named only once its name is known to be a valid
/// one (text that is not a name is often a value typed before the colon), and its value is
/// never shown: values are often credentials.
pub fn check_header(name: &str, value: &str) -> Result<(), EndpointError> {
    let invalid = |m: String| Err(EndpointError::Invalid(m));
    if name.is_empty() {
        return invalid("a header name is empty: give each header a name, e.g. X-Tenant".into());
    }
    if name.chars().count() > MAX_HEADER_NAME_CHARS
        || reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
    {
        return invalid(format!(
            "a header name is longer than {MAX_HEADER_NAME_CHARS} characters or has characters \
             a header name cannot have (such as a space or a line break): names are letters, \
             digits and - such as Authorization, with the value after a colon: \
             'Authorization: Bearer …' (it is not repeated here, as it may hold a secret)"
        ));
    }
    if crate::pipeline::deliver::is_reserved_header(name) {
        return invalid(format!(
            "header {name:?} is set by hookrelay itself and cannot be replaced: Content-Type, \
             User-Agent, Host, Content-Length, traceparent, tracestate, X-Webhook-* and \
             webhook-* are reserved; pick another name"
        ));
    }
    // Control characters (tab aside) would let a value start a new header line.
    if value.chars().any(|c| c != '\t' && (c < ' ' || c == '\x7f')) {
        return invalid(format!(
            "header {name:?} has a value with a line break or another control character: a \
             header value is one line of text (the value is not shown, as it may be a secret)"
        ));
    }
    let chars = value.chars().count();
    if chars > MAX_HEADER_VALUE_CHARS {
        return invalid(format!(
            "header {name:?} has a value of {chars} characters; at most \
             {MAX_HEADER_VALUE_CHARS} are allowed, as receivers and proxies commonly refuse \
             longer headers"
        ));
    }
    Ok(())
}

/// Checks an endpoint's static headers, each and together, and returns them as the JSON
/// object stored in `headers`.
pub fn headers_json<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Value, EndpointError> {
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        check_header(name, value)?;
        if let Some(first) = map.keys().find(|k| k.eq_ignore_ascii_case(name)) {
            return Err(EndpointError::Invalid(format!(
                "header {first:?} is given more than once (names ignore case): keep one"
            )));
        }
        map.insert(name.to_string(), Value::String(value.to_string()));
    }
    if map.len() > MAX_HEADERS {
        return Err(EndpointError::Invalid(format!(
            "{} static headers are given; an endpoint may have at most {MAX_HEADERS}",
            map.len()
        )));
    }
    Ok(Value::Object(map))
}

/// The bytes a Standard Webhooks key may decode to (as the generated ones and the hint say).
pub const STANDARD_KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// Checks a secret given for `scheme`. `generate` says how to have one generated instead with
/// the command at hand, e.g. "leave --secret out of `hookrelay endpoint add`".
pub fn check_secret(scheme: Scheme, secret: &str, generate: &str) -> Result<(), EndpointError> {
    let chars = secret.chars().count();
    if !(8..=1000).contains(&chars) {
        return Err(EndpointError::Invalid(format!(
            "the secret has {chars} characters; 8 to 1000 are allowed: give a longer one, or \
             {generate} to have a strong one generated"
        )));
    }
    if scheme != Scheme::Standard {
        return Ok(());
    }
    let form = "whsec_<base64 of 24 to 64 random bytes>";
    let key = sign::standard_key(secret).map_err(|_| {
        EndpointError::Invalid(format!(
            "a standard-webhooks secret must be \"whsec_\" followed by base64: give {form}, or \
             {generate} to have one generated"
        ))
    })?;
    if !STANDARD_KEY_BYTES.contains(&key.len()) {
        return Err(EndpointError::Invalid(format!(
            "a standard-webhooks secret must hold 24 to 64 bytes; this one holds {}: give \
             {form}, or {generate} to have one generated",
            key.len()
        )));
    }
    Ok(())
}

/// Checks event and model filters: event names as events are named
/// ([`crate::admin::emit::event_name_problem`]); model names non-empty, at most 200 characters,
/// without spaces or invisible characters (Unicode Cc, Cf, Zs, Zl, Zp), as the database does.
pub fn check_filters(events: &[String], models: &[String]) -> Result<(), EndpointError> {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    if let Some(problem) = events
        .iter()
        .find_map(|e| crate::admin::emit::event_name_problem(e))
    {
        return Err(EndpointError::Invalid(format!(
            "event filter: {problem}: name events with 1 to 200 of {}",
            crate::admin::emit::EVENT_NAME_CHARS
        )));
    }
    let invisible = |c: &char| {
        matches!(
            c.general_category(),
            G::Control | G::Format | G::SpaceSeparator | G::LineSeparator | G::ParagraphSeparator
        )
    };
    for model in models {
        let chars = model.chars().count();
        if chars == 0 || chars > 200 {
            return Err(EndpointError::Invalid(
                "model filter: a model name is empty or longer than 200 characters".into(),
            ));
        }
        if let Some(c) = model.chars().find(invisible) {
            return Err(EndpointError::Invalid(format!(
                "model filter: the model name {model:?} has {}: model names such as \
                 store.Order have no spaces or invisible characters",
                crate::admin::emit::shown_char(c)
            )));
        }
    }
    Ok(())
}

/// The longest endpoint URL (the endpoints trigger checks the same).
pub const MAX_URL_CHARS: usize = 2048;

const CREDENTIALS: &str = "endpoint url must not contain credentials (user:password@): \
                           receivers authenticate hookrelay by its signature, or use endpoint \
                           headers";

/// Checks a URL before the database does, with a message that says what to fix. Credentials
/// are looked for first, and a URL is never echoed with them.
pub fn check_url(url: &str) -> Result<(), EndpointError> {
    let shown = without_credentials(url);
    if shown != url {
        return Err(EndpointError::Invalid(CREDENTIALS.into()));
    }
    if url.chars().count() > MAX_URL_CHARS {
        return Err(EndpointError::Invalid(format!(
            "endpoint url is {} characters long; at most {MAX_URL_CHARS} are allowed: receivers \
             and proxies commonly refuse longer URLs; move long tokens into a static header",
            url.chars().count()
        )));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        EndpointError::Invalid(format!(
            "endpoint url {shown:?} is malformed ({e}): give a full URL such as https://example.com/webhooks"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(EndpointError::Invalid(format!(
            "endpoint url {shown:?} uses the {} scheme; only http:// and https:// are allowed",
            parsed.scheme()
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(EndpointError::Invalid(CREDENTIALS.into()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(EndpointError::Invalid(format!(
            "endpoint url {shown:?} has no host"
        )));
    }
    if parsed.port() == Some(0) {
        return Err(EndpointError::Invalid(format!(
            "endpoint url {shown:?} has port 0, which nothing listens on: give the receiver's \
             port, or none for the default (80 for http, 443 for https)"
        )));
    }
    Ok(())
}

/// `url` with any `user:password@` before its host cut out (as `***@`), for messages. Works on
/// text that does not parse as a URL too, which is when a message most needs to show it.
pub fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Parses the JSON of `--include-fields` or `--redact-fields`. Its shape is checked by the
/// database when the endpoint is written, with a message naming what is wrong.
pub fn shaping_json(flag: &str, text: &str) -> Result<Value, EndpointError> {
    serde_json::from_str(text).map_err(|e| {
        EndpointError::Invalid(format!(
            "{flag} is not valid JSON ({e}): give for example '[\"id\", \"total\"]', \
             '{{\"store.Order\": [\"id\", \"total\"]}}' or \
             '{{\"store.Customer\": {{\"email\": \"***@***.com\"}}}}'"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_with_a_reason() {
        assert!(check_url("https://example.com/hooks").is_ok());
        assert!(check_url("http://127.0.0.1:8080").is_ok());
        assert!(check_url("http://[::1]:8080/x").is_ok());
        let cases = [
            ("ftp://example.com", "only http:// and https://"),
            ("example.com/hooks", "malformed"),
            ("https://user:pw@example.com", "credentials"),
            ("", "malformed"),
        ];
        for (url, expected) in cases {
            let err = check_url(url).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }

    #[test]
    fn credentials_are_refused_first_and_never_echoed() {
        for url in [
            "ftp://user:hunter2-pw@example.com/x",
            "https://user:hunter2-pw@",
            "https://user:hunter2-pw@exa mple.com",
            "https://:hunter2-pw@example.com",
        ] {
            let err = check_url(url).unwrap_err().to_string();
            assert!(err.contains("credentials"), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
        assert_eq!(
            without_credentials("https://a:b@host:8/p?q=x@y#z"),
            "https://***@host:8/p?q=x@y#z"
        );
        assert_eq!(
            without_credentials("https://host/p@q"),
            "https://host/p@q",
            "an @ after the host is not a credential"
        );
        assert_eq!(without_credentials("not a url"), "not a url");
    }

    #[test]
    fn header_arguments_are_name_colon_value() {
        assert_eq!(
            parse_header("Authorization: Bearer a:b").unwrap(),
            ("Authorization".into(), "Bearer a:b".into())
        );
        assert_eq!(
            parse_header(" X-Tenant :acme ").unwrap(),
            ("X-Tenant".into(), "acme".into())
        );
        assert!(parse_header("X-Tenant")
            .unwrap_err()
            .to_string()
            .contains("no colon"));
        assert!(parse_header(": value")
            .unwrap_err()
            .to_string()
            .contains("no name"));
        let twice = [("X-Tenant", "a"), ("x-tenant", "b")];
        assert!(headers_json(twice)
            .unwrap_err()
            .to_string()
            .contains("\"X-Tenant\" is given more than once"));
    }

    #[test]
    fn port_zero_is_refused() {
        for url in [
            "http://example.com:0/x",
            "https://[2001:db8::1]:0",
            "http://h:00/",
        ] {
            let err = check_url(url).unwrap_err().to_string();
            assert!(err.contains("has port 0"), "{url}: {err}");
        }
        assert!(check_url("http://example.com:8080/").is_ok());
    }

    #[test]
    fn standard_keys_hold_24_to_64_bytes_and_hints_fit_the_command() {
        let b64 = |n: usize| {
            use base64::Engine;
            format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(vec![7u8; n])
            )
        };
        let hint = "leave --secret out of `hookrelay endpoint rotate-secret`";
        for n in [24, 32, 64] {
            assert!(check_secret(Scheme::Standard, &b64(n), hint).is_ok(), "{n}");
        }
        for n in [6, 23, 65] {
            let err = check_secret(Scheme::Standard, &b64(n), hint)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!(
                    "a standard-webhooks secret must hold 24 to 64 bytes; this one holds {n}"
                )) && err.contains(hint),
                "{err}"
            );
        }
        let err = check_secret(Scheme::Hookrelay, "short", hint)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has 5 characters") && err.contains(hint),
            "{err}"
        );
        assert!(!err.contains("short"), "{err}");
    }

    #[test]
    fn filters_refuse_invisible_and_non_ascii_event_names() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(check_filters(&s(&["order.paid"]), &s(&["Ördér.Items"])).is_ok());
        for (events, models, expected) in [
            (
                s(&["order\u{a0}paid"]),
                s(&[]),
                "event filter: the event name",
            ),
            (s(&["order\u{200b}"]), s(&[]), "(U+200B)"),
            (s(&["café"]), s(&[]), "\"é\" (U+00E9)"),
            (
                s(&[]),
                s(&["store.\u{2028}Order"]),
                "model filter: the model name",
            ),
            (s(&[]), s(&["store\u{feff}.Order"]), "(U+FEFF)"),
            (s(&[]), s(&[""]), "empty"),
        ] {
            let err = check_filters(&events, &models).unwrap_err().to_string();
            assert!(err.contains(expected), "{events:?} {models:?}: {err}");
        }
    }

    #[test]
    fn shaping_flags_must_be_json() {
        assert_eq!(
            shaping_json("--include-fields", r#"["id"]"#).unwrap(),
            serde_json::json!(["id"])
        );
        let err = shaping_json("--redact-fields", "{email: x}")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--redact-fields is not valid JSON"),
            "{err}"
        );
    }
}
