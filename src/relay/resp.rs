//! Just enough RESP2 to read a sharded pub/sub connection: the `redis` crate's
//! async pub/sub has no `SSUBSCRIBE`, so each shard's subscriber speaks the
//! protocol itself (commands are still packed by the crate).

use std::{future::Future, pin::Pin};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Largest bulk string accepted (a relayed envelope is far smaller).
const MAX_BULK: usize = 64 << 20;
/// Largest array accepted.
const MAX_ITEMS: usize = 1 << 20;

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`
    Simple(String),
    /// `-ERR …`, `-MOVED …`
    Error(String),
    /// `:1`
    Int(i64),
    /// `$3\r\nfoo` (`None`: the null bulk string).
    Bulk(Option<Vec<u8>>),
    /// `*2 …` (`None`: the null array).
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The value as text, for simple and bulk strings.
    pub fn text(&self) -> Option<&str> {
        match self {
            Resp::Simple(s) => Some(s),
            Resp::Bulk(Some(b)) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

async fn line<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let n = r.read_until(b'\n', &mut buf).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    if !buf.ends_with(b"\r\n") {
        return Err(bad("RESP line without CRLF"));
    }
    buf.truncate(buf.len() - 2);
    String::from_utf8(buf).map_err(|_| bad("RESP line is not UTF-8"))
}

fn length(s: &str) -> std::io::Result<Option<usize>> {
    match s.parse::<i64>() {
        Ok(-1) => Ok(None),
        Ok(n) if n >= 0 => Ok(Some(n as usize)),
        _ => Err(bad("bad RESP length")),
    }
}

/// Reads one value.
pub fn read<'a, R: AsyncBufRead + Unpin + Send>(
    r: &'a mut R,
) -> Pin<Box<dyn Future<Output = std::io::Result<Resp>> + Send + 'a>> {
    Box::pin(async move {
        let head = line(r).await?;
        let (kind, rest) = head
            .split_at_checked(1)
            .ok_or_else(|| bad("empty RESP line"))?;
        match kind {
            "+" => Ok(Resp::Simple(rest.to_string())),
            "-" => Ok(Resp::Error(rest.to_string())),
            ":" => rest
                .parse()
                .map(Resp::Int)
                .map_err(|_| bad("bad RESP integer")),
            "$" => match length(rest)? {
                None => Ok(Resp::Bulk(None)),
                Some(n) if n > MAX_BULK => Err(bad("RESP bulk string too long")),
                Some(n) => {
                    let mut data = vec![0; n + 2];
                    r.read_exact(&mut data).await?;
                    if !data.ends_with(b"\r\n") {
                        return Err(bad("RESP bulk string without CRLF"));
                    }
                    data.truncate(n);
                    Ok(Resp::Bulk(Some(data)))
                }
            },
            "*" => match length(rest)? {
                None => Ok(Resp::Array(None)),
                Some(n) if n > MAX_ITEMS => Err(bad("RESP array too long")),
                Some(n) => {
                    let mut items = Vec::with_capacity(n.min(64));
                    for _ in 0..n {
                        items.push(read(r).await?);
                    }
                    Ok(Resp::Array(Some(items)))
                }
            },
            _ => Err(bad("unknown RESP type")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Vec<Resp> {
        let mut r = tokio::io::BufReader::new(bytes);
        let mut out = Vec::new();
        while let Ok(v) = read(&mut r).await {
            out.push(v);
        }
        out
    }

    #[actix_rt::test]
    async fn reads_pushes_replies_and_errors() {
        let got = parse(
            b"*3\r\n$10\r\nssubscribe\r\n$2\r\nch\r\n:1\r\n\
              *3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$5\r\nhi\r\n!\r\n\
              -MOVED 12182 127.0.0.1:7002\r\n+PONG\r\n$-1\r\n*-1\r\n",
        )
        .await;
        let bulk = |s: &[u8]| Resp::Bulk(Some(s.to_vec()));
        assert_eq!(
            got,
            vec![
                Resp::Array(Some(vec![bulk(b"ssubscribe"), bulk(b"ch"), Resp::Int(1)])),
                Resp::Array(Some(vec![bulk(b"smessage"), bulk(b"ch"), bulk(b"hi\r\n!")])),
                Resp::Error("MOVED 12182 127.0.0.1:7002".into()),
                Resp::Simple("PONG".into()),
                Resp::Bulk(None),
                Resp::Array(None),
            ]
        );
        assert_eq!(got[3].text(), Some("PONG"));
    }

    #[actix_rt::test]
    async fn refuses_malformed_input() {
        assert!(parse(b"$5\r\nabc\r\n").await.is_empty());
        assert!(parse(b"?x\r\n").await.is_empty());
        assert!(parse(b"+no crlf\n").await.is_empty());
        assert!(parse(b"$-7\r\n").await.is_empty());
    }
}
