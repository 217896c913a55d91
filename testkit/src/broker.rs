//! The in-process entry point: a broker on its own thread and runtime, so it works from any test harness and
//! outlives none of it.

use std::thread::JoinHandle;

use anyhow::Context;
use tokio::sync::oneshot;

use crate::config::BrokerConfig;
use crate::server;

/// A running STAN broker. Dropping it asks it to stop without waiting; `shutdown` also waits (see the crate docs).
pub struct Broker {
    cluster_id: String,
    nats_url: String,
    stop: Option<oneshot::Sender<()>>,
    /// Tells how the broker ended, when it ends.
    ended: Option<oneshot::Receiver<Result<(), String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Broker {
    /// Starts the broker on its own runtime thread; returns once it answers discover requests.
    pub async fn start(config: BrokerConfig) -> anyhow::Result<Broker> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ended_tx, ended_rx) = oneshot::channel();
        let (cluster_id, nats_url) = (config.cluster_id.clone(), config.nats_url.clone());
        let thread = std::thread::Builder::new()
            .name(format!("stan-broker-{cluster_id}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => {
                        let outcome = runtime.block_on(server::run(config, ready_tx, stop_rx));
                        // The runtime (and the store it owns) is gone before anyone hears of the end.
                        drop(runtime);
                        let _ = ended_tx.send(outcome);
                    }
                    Err(error) => {
                        let _ = ready_tx.send(Err(error.into()));
                    }
                }
            })
            .context("Failed to spawn the broker thread")?;
        ready_rx
            .await
            .context("The broker thread ended before it was ready")??;
        Ok(Broker {
            cluster_id,
            nats_url,
            stop: Some(stop_tx),
            ended: Some(ended_rx),
            thread: Some(thread),
        })
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }

    /// Resolves when the broker stops by itself (nats-server connection lost, store write failed) with the
    /// reason; pending forever while it runs. Resolves at once if already awaited before.
    pub async fn failed(&mut self) -> String {
        match self.ended.take() {
            Some(ended) => match ended.await {
                Ok(Err(error)) => error,
                Ok(Ok(())) => "the broker stopped".into(),
                Err(_) => "the broker thread ended unexpectedly".into(),
            },
            None => "the broker already stopped".into(),
        }
    }

    /// Stops answering and waits until the broker's thread has ended, its store saved and closed, so a new broker
    /// can start on the same store directory at once.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
