//! Named schema steps, applied once per database in order.

use crate::{Pg, PgError};

/// One schema step of a component: applied once, in the order given.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// A name unique within the component (e.g. `"001-tables"`).
    pub name: &'static str,
    /// Statements to run (several may be separated by `;`).
    pub sql: &'static str,
}

/// The advisory lock key that serialises migrations ("magicfs" in ASCII).
const MIGRATION_LOCK: i64 = 0x006d_6167_6963_6673;

impl Pg {
    /// Applies the steps of `component` not yet applied to this database, in
    /// one transaction under an advisory lock (concurrent callers wait, then
    /// find the work done). Returns the names applied now.
    pub fn migrate(&self, component: &str, steps: &[Migration]) -> Result<Vec<&'static str>, PgError> {
        self.run(|c| {
            let component = component.to_string();
            let steps = steps.to_vec();
            Box::pin(async move {
                let tx = c.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
                tx.batch_execute(
                    "CREATE TABLE IF NOT EXISTS magicfs_migrations (
                        component text NOT NULL,
                        name text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (component, name))",
                )
                .await?;
                let rows = tx.query("SELECT name FROM magicfs_migrations WHERE component = $1", &[&component]).await?;
                let done: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                let mut applied = Vec::new();
                for step in &steps {
                    if done.iter().any(|d| d == step.name) {
                        continue;
                    }
                    tx.batch_execute(step.sql).await?;
                    tx.execute(
                        "INSERT INTO magicfs_migrations (component, name) VALUES ($1, $2)",
                        &[&component, &step.name],
                    )
                    .await?;
                    applied.push(step.name);
                }
                tx.commit().await?;
                Ok(applied)
            })
        })
    }
}
