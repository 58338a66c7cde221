use super::*;

/// What Prometheus 2.x sends.
const PROMETHEUS_2: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// What Prometheus 3.x sends.
const PROMETHEUS_3: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
    application/openmetrics-text;version=0.0.1;q=0.5,\
    text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

#[test]
fn scrapers_that_ask_for_openmetrics_get_it() {
    assert_eq!(negotiate(Some(PROMETHEUS_2)), Format::OpenMetrics);
    assert_eq!(negotiate(Some(PROMETHEUS_3)), Format::OpenMetrics);
    assert_eq!(
        negotiate(Some("application/openmetrics-text")),
        Format::OpenMetrics
    );
    assert_eq!(
        negotiate(Some(
            "text/plain;q=0.2, application/openmetrics-text; version=1.0.0"
        )),
        Format::OpenMetrics
    );
}

#[test]
fn everything_else_gets_prometheus_text() {
    for accept in [
        None,
        Some(""),
        Some("*/*"),
        Some("text/plain"),
        Some("text/plain;version=0.0.4"),
        Some("application/json"),
        Some("not a media type"),
        // Refused (q=0), or a version hookrelay does not write.
        Some("application/openmetrics-text;q=0, */*"),
        Some("application/openmetrics-text;version=2.0.0"),
        // The higher q wins, and the first one listed on a tie.
        Some("application/openmetrics-text;q=0.5,text/plain;q=0.9"),
        Some("text/plain,application/openmetrics-text"),
    ] {
        assert_eq!(negotiate(accept), Format::Prometheus, "{accept:?}");
    }
}

#[test]
fn counters_are_described_by_their_total_series_and_eof_goes() {
    let openmetrics = "# HELP hookrelay_deliveries Delivery attempts.\n\
        # TYPE hookrelay_deliveries counter\n\
        hookrelay_deliveries_total{outcome=\"delivered\"} 2\n\
        # HELP hookrelay_backlog Waiting work.\n\
        # TYPE hookrelay_backlog gauge\n\
        hookrelay_backlog{kind=\"due\"} 0\n\
        # EOF\n";
    assert_eq!(
        openmetrics_to_prometheus(openmetrics),
        "# HELP hookrelay_deliveries_total Delivery attempts.\n\
         # TYPE hookrelay_deliveries_total counter\n\
         hookrelay_deliveries_total{outcome=\"delivered\"} 2\n\
         # HELP hookrelay_backlog Waiting work.\n\
         # TYPE hookrelay_backlog gauge\n\
         hookrelay_backlog{kind=\"due\"} 0\n"
    );
}

#[test]
fn openmetrics_only_syntax_is_removed() {
    let openmetrics = "# HELP x_seconds Time spent, with a \\\"quote\\\" and a \\\\.\n\
        # TYPE x_seconds counter\n\
        # UNIT x_seconds seconds\n\
        x_seconds_total{path=\"/a # b} c\"} 1.5 # {trace_id=\"7\"} 1.0 1700000000.5\n\
        x_seconds_created 1700000000.25\n\
        x_seconds_total{path=\"/b\"} 2 1700000000.5\n\
        # TYPE build info\n\
        build_info{version=\"1\"} 1\n\
        # TYPE odd unknown\n\
        odd 3\n\
        # EOF\n";
    assert_eq!(
        openmetrics_to_prometheus(openmetrics),
        "# HELP x_seconds_total Time spent, with a \"quote\" and a \\\\.\n\
         # TYPE x_seconds_total counter\n\
         x_seconds_total{path=\"/a # b} c\"} 1.5\n\
         x_seconds_total{path=\"/b\"} 2 1700000000500\n\
         # TYPE build_info gauge\n\
         build_info{version=\"1\"} 1\n\
         # TYPE odd untyped\n\
         odd 3\n"
    );
}

#[test]
fn histograms_keep_their_series() {
    let openmetrics = "# HELP d Duration.\n\
        # TYPE d histogram\n\
        d_sum 0.5\n\
        d_count 1\n\
        d_bucket{le=\"1.0\"} 1\n\
        d_bucket{le=\"+Inf\"} 1\n\
        d_created 1700000000.0\n\
        # EOF\n";
    let text = openmetrics_to_prometheus(openmetrics);
    assert!(text.starts_with("# HELP d Duration.\n# TYPE d histogram\nd_sum 0.5\n"));
    assert!(text.ends_with("d_bucket{le=\"+Inf\"} 1\n"), "{text}");
}
