//! A histogram family whose series each have one writer: every HTTP worker observes into series of its own, and a
//! scrape adds up the workers' series that share labels. With prometheus' `HistogramVec` all workers observe into
//! one set of atomics, so each request moves their cache lines from the other core; here a worker writes only
//! memory that no other writer touches, and the scrape (once every few seconds) pays for the merge instead.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

/// The family, registered once in the registry; cheap to clone (every clone is the same family).
#[derive(Clone)]
pub struct WorkerHistograms {
    shared: Arc<Shared>,
}

struct Shared {
    desc: Desc,
    /// Upper bounds, ascending, without `+Inf`.
    bounds: Vec<f64>,
    series: Mutex<Vec<Arc<Series>>>,
}

/// One worker's series: counts per bucket (the last one is `+Inf`, not cumulative) and the sum of what it observed.
struct Series {
    labels: Vec<String>,
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

/// A series that one worker owns and alone observes into. Not `Clone` and not `Sync`, so there is only ever one
/// writer, which is what lets `observe` read and store instead of an atomic read-modify-write.
pub struct WorkerSeries {
    series: Arc<Series>,
    family: Arc<Shared>,
    _one_thread: PhantomData<std::cell::Cell<()>>,
}

impl WorkerHistograms {
    /// A family named `name` with `labels`, and `bounds` (ascending, in the unit observed).
    pub fn new(
        name: String,
        help: &str,
        labels: &[&str],
        bounds: &[f64],
    ) -> Result<WorkerHistograms, prometheus::Error> {
        let desc = Desc::new(
            name,
            help.to_owned(),
            labels.iter().map(|label| (*label).to_owned()).collect(),
            Default::default(),
        )?;
        Ok(WorkerHistograms {
            shared: Arc::new(Shared {
                desc,
                bounds: bounds.to_vec(),
                series: Mutex::new(Vec::new()),
            }),
        })
    }

    /// A new series with these label values (in the order of the family's labels), for one worker. Two workers
    /// asking for the same labels get a series each; the scrape shows their sum.
    pub fn series(&self, values: &[&str]) -> WorkerSeries {
        let series = Arc::new(Series {
            labels: values.iter().map(|value| (*value).to_owned()).collect(),
            counts: (0..=self.shared.bounds.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        });
        self.shared
            .series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(series.clone());
        WorkerSeries {
            series,
            family: self.shared.clone(),
            _one_thread: PhantomData,
        }
    }
}

impl WorkerSeries {
    pub fn observe(&self, value: f64) {
        let bucket = self.family.bounds.partition_point(|bound| *bound < value);
        let count = &self.series.counts[bucket];
        // One writer (see the type): a plain read and store cannot lose an update; the scrape may read a count one
        // observation behind the sum, as it may with prometheus' own histogram.
        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let sum = f64::from_bits(self.series.sum.load(Ordering::Relaxed)) + value;
        self.series.sum.store(sum.to_bits(), Ordering::Relaxed);
    }
}

impl Collector for WorkerHistograms {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.shared.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let shared = &*self.shared;
        let mut merged: BTreeMap<&[String], (Vec<u64>, f64)> = BTreeMap::new();
        let series = shared.series.lock().unwrap_or_else(PoisonError::into_inner);
        for one in series.iter() {
            let (counts, sum) = merged
                .entry(one.labels.as_slice())
                .or_insert_with(|| (vec![0; one.counts.len()], 0.0));
            for (total, count) in counts.iter_mut().zip(one.counts.iter()) {
                *total += count.load(Ordering::Relaxed);
            }
            *sum += f64::from_bits(one.sum.load(Ordering::Relaxed));
        }
        let metrics = merged
            .into_iter()
            .map(|(values, (counts, sum))| {
                let mut labels: Vec<proto::LabelPair> = shared
                    .desc
                    .variable_labels
                    .iter()
                    .zip(values)
                    .map(|(name, value)| {
                        let mut pair = proto::LabelPair::default();
                        pair.set_name(name.clone());
                        pair.set_value(value.clone());
                        pair
                    })
                    .collect();
                labels.sort_by(|a, b| a.name().cmp(b.name()));
                let mut cumulative = 0;
                let buckets = shared
                    .bounds
                    .iter()
                    .zip(&counts)
                    .map(|(bound, count)| {
                        cumulative += count;
                        let mut bucket = proto::Bucket::default();
                        bucket.set_upper_bound(*bound);
                        bucket.set_cumulative_count(cumulative);
                        bucket
                    })
                    .collect();
                let mut histogram = proto::Histogram::default();
                histogram.set_sample_count(counts.iter().sum());
                histogram.set_sample_sum(sum);
                histogram.set_bucket(buckets);
                let mut metric = proto::Metric::default();
                metric.set_label(labels);
                metric.set_histogram(histogram);
                metric
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(shared.desc.fq_name.clone());
        family.set_help(shared.desc.help.clone());
        family.set_field_type(MetricType::HISTOGRAM);
        family.set_metric(metrics);
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family() -> WorkerHistograms {
        WorkerHistograms::new(
            "t_seconds".into(),
            "test",
            &["route", "status"],
            &[0.1, 1.0],
        )
        .expect("a valid family")
    }

    #[test]
    fn two_workers_with_the_same_labels_show_as_one_series_with_their_sum() {
        // Arrange
        let histograms = family();
        let first = histograms.series(&["/a", "200"]);
        let second = histograms.series(&["/a", "200"]);
        let other = histograms.series(&["/a", "404"]);

        // Act
        first.observe(0.05);
        second.observe(0.5);
        second.observe(5.0);
        other.observe(0.1);

        // Assert
        let families = histograms.collect();
        let metrics = families[0].get_metric();
        assert_eq!(metrics.len(), 2, "one series per label set");
        let ok = metrics[0].get_histogram();
        assert_eq!(metrics[0].get_label()[1].value(), "200");
        assert_eq!(ok.get_sample_count(), 3);
        assert!((ok.get_sample_sum() - 5.55).abs() < 1e-9);
        let cumulative: Vec<u64> = ok
            .get_bucket()
            .iter()
            .map(|b| b.cumulative_count())
            .collect();
        assert_eq!(cumulative, [1, 2], "0.05 <= 0.1, 0.5 <= 1, 5 only in +Inf");
        // A value on a bound falls in that bound's bucket, as in prometheus' own histogram.
        let not_found = metrics[1].get_histogram();
        assert_eq!(not_found.get_bucket()[0].cumulative_count(), 1);
    }
}
