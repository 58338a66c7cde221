//! Refused `emit`, `track` and `untrack` command lines: event names, payloads, the acting
//! user and hostile identifiers.

use super::{case, Case};

/// `hookrelay emit` with a bad name, object, changes or actor.
pub(super) fn emit() -> Vec<Case> {
    let long_event = "a".repeat(201);
    let long_unicode_event = "é".repeat(201);
    let nested = format!("{}{}", "[".repeat(300), "]".repeat(300));
    vec![
        // Events and payloads.
        case(
            &["emit", ""],
            1,
            "the event name is empty: name events like order.paid",
        ),
        case(
            &["emit", &long_event],
            1,
            "the event name has 201 characters; at most 200 are allowed",
        ),
        case(
            &["emit", &long_unicode_event],
            1,
            "the event name has 201 characters; at most 200 are allowed",
        ),
        case(
            &["emit", "order paid"],
            1,
            "the event name \"order paid\" has (U+0020), which event names may not have: \
             name events like order.paid, with 1 to 200 of A-Z a-z 0-9 . _ - : /",
        ),
        // Spaces PostgreSQL's [[:space:]] does not see, invisible characters, and non-ASCII
        // (which would travel raw in the X-Webhook-Event header).
        case(
            &["emit", "order\u{a0}paid"],
            1,
            "the event name \"order\\u{a0}paid\" has (U+00A0)",
        ),
        case(
            &["emit", "order.paid\u{200b}"],
            1,
            "the event name \"order.paid\\u{200b}\" has (U+200B)",
        ),
        case(
            &["emit", "commande.payée"],
            1,
            "the event name \"commande.payée\" has \"é\" (U+00E9)",
        ),
        case(
            &["emit", "x.y", "--object", "[1, 2]"],
            1,
            "--object must be a JSON object",
        ),
        case(
            &["emit", "x.y", "--object", "\"text\""],
            1,
            "--object must be a JSON object",
        ),
        case(
            &["emit", "x.y", "--object", "null"],
            1,
            "--object must be a JSON object",
        ),
        case(
            &["emit", "x.y", "--object", "{bad"],
            1,
            "--object is not valid JSON",
        ),
        case(
            &["emit", "x.y", "--object", &nested],
            1,
            "--object is not valid JSON (recursion limit",
        ),
        case(
            &["emit", "x.y", "--changes", "5"],
            1,
            "--changes must be a JSON object",
        ),
        case(
            &["emit", "x.y", "--object", r#"{"a": "\u0000"}"#],
            1,
            "cannot store the NUL character",
        ),
        // The acting user.
        case(
            &["emit", "x.y", "--actor", r#"{"id": oops"#],
            1,
            "--actor starts like JSON but is not valid JSON",
        ),
        case(
            &["emit", "x.y", "--actor", r#""unterminated"#],
            1,
            "--actor starts like JSON but is not valid JSON",
        ),
        case(&["emit", "x.y", "--actor", " "], 1, "--actor is empty"),
    ]
}

/// `hookrelay track` and `untrack` with hostile identifiers and unknown columns or events.
pub(super) fn track() -> Vec<Case> {
    vec![
        // Hostile identifiers to track.
        case(
            &["track", "orders; DROP TABLE orders"],
            1,
            "no table orders; DROP TABLE orders",
        ),
        case(&["track", "\"; DROP TABLE orders; --"], 1, "no table"),
        case(&["track", "'orders'"], 1, "no table"),
        case(&["track", "ördérs"], 1, "no table ördérs"),
        case(
            &["track", "orders", "--events", "created,moved"],
            1,
            "unknown event 'moved'",
        ),
        case(
            &[
                "track",
                "orders",
                "--events",
                "created,'); DROP TABLE orders; --",
            ],
            1,
            "unknown event",
        ),
        case(
            &["track", "orders", "--exclude", "id); DROP TABLE orders; --"],
            1,
            "has no column",
        ),
        case(
            &[
                "track",
                "orders",
                "--account-column",
                "\"; DROP TABLE orders",
            ],
            1,
            "has no column",
        ),
        case(
            &["track", "orders", "--model", "store Order"],
            1,
            "model name 'store Order' is not valid",
        ),
        case(
            &["track", "orders", "--exclude", "id"],
            1,
            "cannot be excluded",
        ),
        case(&["track", "hookrelay.events"], 1, "cannot be tracked"),
        case(&["untrack", "orders; DROP TABLE orders"], 1, "no table"),
    ]
}
