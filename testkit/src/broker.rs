//! The in-process entry point: a broker on its own thread and runtime, so it works from any test harness and
//! outlives none of it.

use std::thread::JoinHandle;

use anyhow::{bail, Context};
use tokio::sync::oneshot;

use crate::config::{BrokerConfig, StoreKind};
use crate::server;

/// A running STAN broker. Dropping it stops it.
pub struct Broker {
    cluster_id: String,
    nats_url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Broker {
    /// Starts the broker on its own runtime thread; returns once it answers discover requests.
    pub async fn start(config: BrokerConfig) -> anyhow::Result<Broker> {
        if let StoreKind::File(dir) = &config.store {
            bail!(
                "the file store is not implemented yet (asked for {})",
                dir.display()
            );
        }
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (cluster_id, nats_url) = (config.cluster_id.clone(), config.nats_url.clone());
        let thread = std::thread::Builder::new()
            .name(format!("stan-broker-{cluster_id}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => runtime.block_on(server::run(config, ready_tx, stop_rx)),
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
            thread: Some(thread),
        })
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }

    /// Stops answering and waits until the broker's thread has ended.
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
