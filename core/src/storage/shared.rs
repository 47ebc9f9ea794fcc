//! The part of the [`EventStore`](super::EventStore) that is the same SQL on SQLite and PostgreSQL
//! (`$N` placeholders work on both; JSON columns are read through `CAST(… AS TEXT)`). Each adapter
//! keeps only what differs: connecting, and `append_rows` (multi-row inserts tuned per database).

/// Implements `EventStore` for an adapter with a `pool` field and an inherent `append_rows`.
macro_rules! impl_event_store {
    ($store:ty) => {
        impl $crate::storage::EventStore for $store {
            fn append<'a>(
                &'a self,
                messages: &'a [$crate::storage::NewMessage],
                rejected: &'a [$crate::storage::NewRejected],
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<Vec<$crate::storage::InsertOutcome>, $crate::storage::StorageError>,
            > {
                Box::pin(self.append_rows(messages, rejected))
            }

            fn upsert_source<'a>(
                &'a self,
                name: &'a str,
                write_key: &'a str,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<$crate::storage::SourceRow, $crate::storage::StorageError>,
            > {
                Box::pin(async move {
                    // Safe when several processes start at once: insert if absent (any unique
                    // conflict is left alone), then move the key if the name exists with another one.
                    sqlx::query(
                        "INSERT INTO sources (name, write_key, created_at) VALUES ($1, $2, $3) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(name)
                    .bind(write_key)
                    .bind(chrono::Utc::now().timestamp_millis())
                    .execute(&self.pool)
                    .await?;
                    sqlx::query(
                        "UPDATE sources SET write_key = $2 WHERE name = $1 AND write_key <> $2",
                    )
                    .bind(name)
                    .bind(write_key)
                    .execute(&self.pool)
                    .await?;
                    let (id, name, write_key): (i64, String, String) =
                        sqlx::query_as("SELECT id, name, write_key FROM sources WHERE name = $1")
                            .bind(name)
                            .fetch_one(&self.pool)
                            .await?;
                    Ok($crate::storage::SourceRow {
                        id,
                        name,
                        write_key,
                    })
                })
            }

            fn sources(
                &self,
            ) -> futures_util::future::BoxFuture<
                '_,
                Result<Vec<$crate::storage::SourceRow>, $crate::storage::StorageError>,
            > {
                Box::pin(async move {
                    let rows: Vec<(i64, String, String)> =
                        sqlx::query_as("SELECT id, name, write_key FROM sources ORDER BY id")
                            .fetch_all(&self.pool)
                            .await?;
                    Ok(rows
                        .into_iter()
                        .map(|(id, name, write_key)| $crate::storage::SourceRow {
                            id,
                            name,
                            write_key,
                        })
                        .collect())
                })
            }

            fn messages_by_id<'a>(
                &'a self,
                message_id: &'a str,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<Vec<$crate::storage::StoredMessage>, $crate::storage::StorageError>,
            > {
                Box::pin(async move {
                    let rows: Vec<$crate::storage::shared::MessageTuple> = sqlx::query_as(&format!(
                        "{} WHERE message_id = $1 ORDER BY seq",
                        $crate::storage::shared::SELECT_MESSAGE
                    ))
                    .bind(message_id)
                    .fetch_all(&self.pool)
                    .await?;
                    rows.into_iter()
                        .map($crate::storage::shared::stored)
                        .collect()
                })
            }

            fn recent_messages(
                &self,
                source_id: i64,
                limit: i64,
            ) -> futures_util::future::BoxFuture<
                '_,
                Result<Vec<$crate::storage::StoredMessage>, $crate::storage::StorageError>,
            > {
                Box::pin(async move {
                    let rows: Vec<$crate::storage::shared::MessageTuple> = sqlx::query_as(&format!(
                        "{} WHERE source_id = $1 ORDER BY seq DESC LIMIT $2",
                        $crate::storage::shared::SELECT_MESSAGE
                    ))
                    .bind(source_id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                    rows.into_iter()
                        .map($crate::storage::shared::stored)
                        .collect()
                })
            }

            fn counts(
                &self,
            ) -> futures_util::future::BoxFuture<
                '_,
                Result<(i64, i64), $crate::storage::StorageError>,
            > {
                Box::pin(async move {
                    Ok(sqlx::query_as(
                        "SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM rejected_messages)",
                    )
                    .fetch_one(&self.pool)
                    .await?)
                })
            }

            fn expire_dedup(
                &self,
                before_ms: i64,
            ) -> futures_util::future::BoxFuture<'_, Result<u64, $crate::storage::StorageError>>
            {
                Box::pin(async move {
                    // Small transactions through the write gate, so ingestion never waits long.
                    let mut total = 0;
                    for _ in 0..10_000 {
                        let (mut tx, _gate) =
                            $crate::storage::BeginWrite::begin_write(&self.pool).await?;
                        let done = sqlx::query(
                            "UPDATE messages SET dedup_key = NULL WHERE seq IN (SELECT seq FROM messages \
                             WHERE dedup_key IS NOT NULL AND received_at < $1 ORDER BY seq LIMIT 5000)",
                        )
                        .bind(before_ms)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        tx.commit().await?;
                        total += done;
                        if done == 0 {
                            break;
                        }
                    }
                    Ok(total)
                })
            }

            fn sync_cursor<'a>(
                &'a self,
                name: &'a str,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<Option<String>, $crate::storage::StorageError>,
            > {
                Box::pin(async move {
                    let v: Option<Option<String>> =
                        sqlx::query_scalar("SELECT value FROM sync_cursors WHERE name = $1")
                            .bind(name)
                            .fetch_optional(&self.pool)
                            .await?;
                    Ok(v.flatten())
                })
            }

            fn set_sync_cursor<'a>(
                &'a self,
                name: &'a str,
                value: &'a str,
            ) -> futures_util::future::BoxFuture<'a, Result<(), $crate::storage::StorageError>>
            {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO sync_cursors (name, value, updated_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
                         updated_at = excluded.updated_at",
                    )
                    .bind(name)
                    .bind(value)
                    .bind(chrono::Utc::now().timestamp_millis())
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                })
            }

            fn ping(
                &self,
            ) -> futures_util::future::BoxFuture<'_, Result<(), $crate::storage::StorageError>> {
                Box::pin(async move {
                    sqlx::query("SELECT 1").execute(&self.pool).await?;
                    Ok(())
                })
            }
        }
    };
}
pub(crate) use impl_event_store;

/// The columns of a stored message, JSON read as text on both databases.
pub(crate) const SELECT_MESSAGE: &str = "SELECT seq, source_id, message_id, kind, status, \
     plan_version, event_time, received_at, CAST(violations AS TEXT), CAST(body AS TEXT) FROM messages";

/// A row of [`SELECT_MESSAGE`].
pub(crate) type MessageTuple = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    i64,
    i64,
    String,
    String,
);

/// Converts a [`MessageTuple`].
pub(crate) fn stored(row: MessageTuple) -> Result<super::StoredMessage, super::StorageError> {
    let (seq, source_id, message_id, kind, status, plan_version, event_time, received_at, v, b) =
        row;
    Ok(super::StoredMessage {
        seq,
        source_id,
        message_id,
        kind,
        status,
        plan_version,
        event_time_ms: event_time,
        received_at_ms: received_at,
        violations: serde_json::from_str(&v)?,
        body: serde_json::from_str(&b)?,
    })
}
