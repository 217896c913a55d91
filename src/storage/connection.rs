//! The pool's connections (and the change feed's own). Two differences from bb8-postgres's manager, both for the
//! lone order's latency (its commit is a handful of round trips, and each one counts):
//! - a checkout tests the connection by its state, not with a query. A connection whose server ended it (restart,
//!   terminated backend, `kill -9`) is closed by the time it is checked out and is replaced; one that dies silently
//!   (a network path lost) fails its first statement instead, which every caller already treats as transient.
//! - each connection keeps the statements it prepared (`Connection::prepared`), so the write path, the cache's
//!   read-through and the change feed do not parse and describe their statements again per query. PostgreSQL
//!   re-plans a prepared statement itself when a table it uses changes.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};

use bb8::ManageConnection;
use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::{Client, Config, Error, Statement};

use crate::storage::tls::Tls;

/// A client and the statements prepared on it. Derefs to the client.
pub struct Connection {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
}

impl Connection {
    /// A connection with nothing prepared yet (the pool's, or one a task holds for itself, as the change feed does).
    pub fn new(client: Client) -> Connection {
        Connection {
            client,
            prepared: HashMap::new(),
        }
    }

    /// `sql` prepared on this connection: the first time a round trip, then from memory.
    pub async fn prepared(&mut self, sql: &'static str) -> Result<Statement, Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }

    /// The client, for functions generic over `GenericClient`.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Deref for Connection {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Connects as bb8-postgres does; tests and keeps connections as described above.
pub struct Manager(PostgresConnectionManager<Tls>);

impl Manager {
    pub fn new(config: Config, tls: Tls) -> Manager {
        Manager(PostgresConnectionManager::new(config, tls))
    }
}

impl ManageConnection for Manager {
    type Connection = Connection;
    type Error = Error;

    async fn connect(&self) -> Result<Connection, Error> {
        Ok(Connection::new(self.0.connect().await?))
    }

    async fn is_valid(&self, conn: &mut Connection) -> Result<(), Error> {
        if conn.client.is_closed() {
            // A closed client fails at once, without the network, and says why.
            conn.client.simple_query("").await?;
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.client.is_closed()
    }
}
