//! The Prometheus exposition behind `/metrics`: each scrape records the counters the process keeps
//! (atomics owned by each component) into a recorder of its own and renders it.
//!
//! The recorder is built per scrape and never installed globally, so several servers in one
//! process (the integration tests) never see each other's counters, and a label that is gone
//! (a source deleted) is gone from the next scrape.

use metrics_exporter_prometheus::PrometheusBuilder;

/// Runs `record` with a fresh Prometheus recorder as the thread's recorder and renders what it
/// recorded in the text exposition format. `record` uses the `metrics` macros (`describe_*!`,
/// `counter!(..).absolute(v)`, `gauge!(..).set(v)`) and must not await.
pub fn render(record: impl FnOnce()) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, record);
    handle.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_are_rendered_with_help_type_and_labels() {
        let out = render(|| {
            metrics::describe_counter!("touchpoint_x_total", "Things counted.");
            metrics::counter!("touchpoint_x_total", "source" => "web").absolute(3);
            metrics::describe_gauge!("touchpoint_y", "A level.");
            metrics::gauge!("touchpoint_y").set(0.0);
        });
        assert!(
            out.contains("# HELP touchpoint_x_total Things counted.\n"),
            "{out}"
        );
        assert!(out.contains("# TYPE touchpoint_x_total counter\n"), "{out}");
        assert!(
            out.contains("touchpoint_x_total{source=\"web\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("# TYPE touchpoint_y gauge\n"), "{out}");
        assert!(out.contains("touchpoint_y 0\n"), "{out}");
    }

    #[test]
    fn two_renders_do_not_share_counters() {
        let first = render(|| metrics::counter!("touchpoint_z_total").absolute(5));
        let second = render(|| {});
        assert!(first.contains("touchpoint_z_total 5"), "{first}");
        assert!(!second.contains("touchpoint_z_total"), "{second}");
    }
}
