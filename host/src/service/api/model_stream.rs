//! Model bytes in and out a chunk at a time: [`receive`] stores an upload
//! as it arrives (checking it is an ONNX model and hashing it on the way),
//! [`ModelBody`] sends a stored model chunk by chunk. Neither holds more
//! than a chunk or two of a model in memory.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::service::error::AppError;
use crate::service::onnx_check::OnnxCheck;
use crate::service::store::models::MODEL_CHUNK_BYTES;
use crate::service::store::{Store, hex};

/// What [`receive`] stored.
#[derive(Debug, Clone)]
pub struct Received {
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Its size.
    pub size_bytes: u64,
}

/// Stores the upload `body` as chunks of model `id`, refusing a file over
/// `max_bytes` (413) or one that is not an ONNX model (422). On any error
/// the chunks written so far are removed.
pub async fn receive(
    store: &Store,
    id: &str,
    body: Body,
    max_bytes: usize,
) -> Result<Received, AppError> {
    let result = receive_chunks(store, id, body, max_bytes).await;
    if result.is_err()
        && let Err(e) = store.delete_model_chunks(id).await
    {
        tracing::warn!(model = %id, "cannot remove a failed upload's chunks: {e}");
    }
    result
}

async fn receive_chunks(
    store: &Store,
    id: &str,
    mut body: Body,
    max_bytes: usize,
) -> Result<Received, AppError> {
    let mut check = OnnxCheck::new();
    let mut sha = Sha256::new();
    let mut pending: Vec<u8> = Vec::with_capacity(MODEL_CHUNK_BYTES);
    let (mut size, mut seq) = (0u64, 0u64);
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame =
            frame.map_err(|e| AppError::Malformed(format!("cannot read the upload: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        size += data.len() as u64;
        if size > max_bytes as u64 {
            return Err(AppError::PayloadTooLarge(format!(
                "the model is larger than the limit of {max_bytes} bytes (--max-model-mb)"
            )));
        }
        check
            .feed(&data)
            .map_err(|e| AppError::Invalid(e.to_string()))?;
        sha.update(&data);
        pending.extend_from_slice(&data);
        while pending.len() >= MODEL_CHUNK_BYTES {
            store
                .insert_model_chunk(id, seq, &pending[..MODEL_CHUNK_BYTES])
                .await?;
            pending.drain(..MODEL_CHUNK_BYTES);
            seq += 1;
        }
    }
    if size == 0 {
        return Err(AppError::BadRequest(
            "empty body: send the ONNX file".into(),
        ));
    }
    check
        .finish()
        .map_err(|e| AppError::Invalid(e.to_string()))?;
    if !pending.is_empty() {
        store.insert_model_chunk(id, seq, &pending).await?;
    }
    Ok(Received {
        sha256: hex(&sha.finalize()),
        size_bytes: size,
    })
}

/// A stored model's bytes as a response body, read a chunk at a time by a
/// task that stays at most two chunks ahead of the client.
pub struct ModelBody {
    chunks: mpsc::Receiver<Result<Bytes, AppError>>,
    left: u64,
}

impl ModelBody {
    /// Streams model `id` of `size_bytes` from `store`.
    pub fn new(store: Store, id: String, size_bytes: u64) -> ModelBody {
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            for seq in 0.. {
                let next = match store.model_chunk(&id, seq).await {
                    Ok(Some(bytes)) => Ok(Bytes::from(bytes)),
                    Ok(None) => break,
                    Err(e) => Err(AppError::from(e)),
                };
                let failed = next.is_err();
                if tx.send(next).await.is_err() || failed {
                    break;
                }
            }
        });
        ModelBody {
            chunks: rx,
            left: size_bytes,
        }
    }
}

impl HttpBody for ModelBody {
    type Data = Bytes;
    type Error = AppError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, AppError>>> {
        match self.chunks.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                self.left = self.left.saturating_sub(bytes.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) if self.left > 0 => Poll::Ready(Some(Err(AppError::Internal(
                format!("the stored model ended {} bytes early", self.left),
            )))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}
