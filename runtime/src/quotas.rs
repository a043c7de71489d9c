//! Client quotas: a byte rate the brokers hold a client id to, so that an
//! analytics consumer replaying history cannot take the broker from the
//! request path (Kafka's quotas: a client past its rate gets its responses
//! delayed, fairly, per broker).
//!
//! librdkafka has no AlterClientQuotas nor DescribeClientQuotas, so the
//! requests (KIP-546: API keys 49 and 48, version 0, the non-flexible
//! encoding every Kafka since 2.6 accepts) are written here by hand from the
//! protocol's published message definitions, and sent to a bootstrap broker
//! (which forwards an alteration to the controller).

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    time::Duration,
};

use crate::{Error, KafkaSettings, Result};

const DESCRIBE_CLIENT_QUOTAS: i16 = 48;
const ALTER_CLIENT_QUOTAS: i16 = 49;
const TIMEOUT: Duration = Duration::from_secs(10);

/// The quota key of fetched bytes per second, per broker.
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";

/// Holds `client_id` to `bytes_per_sec` of fetched bytes per broker, or
/// removes its quota (`None`). Every client with that exact id shares it.
pub async fn set_consumer_byte_rate(
    settings: &KafkaSettings,
    client_id: &str,
    bytes_per_sec: Option<u64>,
) -> Result<()> {
    let request = alter_request(
        client_id,
        CONSUMER_BYTE_RATE,
        bytes_per_sec.map(|b| b as f64),
    );
    ask(settings, request, |r| parse_response(&r)).await
}

/// The `consumer_byte_rate` quota set for exactly `client_id`, if any.
pub async fn consumer_byte_rate(settings: &KafkaSettings, client_id: &str) -> Result<Option<f64>> {
    let request = describe_request(client_id);
    let values = ask(settings, request, |r| parse_describe(&r)).await?;
    Ok(values
        .into_iter()
        .find(|(key, _)| key == CONSUMER_BYTE_RATE)
        .map(|(_, value)| value))
}

/// Sends `request` to the first bootstrap broker that answers it.
async fn ask<T: Send + 'static>(
    settings: &KafkaSettings,
    request: Vec<u8>,
    parse: fn(Vec<u8>) -> Result<T>,
) -> Result<T> {
    let servers = settings.bootstrap_servers.clone();
    tokio::task::spawn_blocking(move || {
        let mut last = None;
        for server in servers.split(',') {
            match exchange(server.trim(), &request).and_then(parse) {
                Ok(answer) => return Ok(answer),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| Error::Quota("no bootstrap server".into())))
    })
    .await
    .map_err(|_| Error::TaskPanicked("a quota request"))?
}

/// Request header v1: api key, version 0, correlation id 1, client id.
fn header(api_key: i16) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(api_key.to_be_bytes());
    body.extend(0i16.to_be_bytes());
    body.extend(1i32.to_be_bytes());
    string(&mut body, "storefront-quotas");
    body
}

fn framed(body: Vec<u8>) -> Vec<u8> {
    let mut framed = (body.len() as i32).to_be_bytes().to_vec();
    framed.extend(body);
    framed
}

/// DescribeClientQuotas v0: the quotas of exactly this client id (strict).
fn describe_request(client_id: &str) -> Vec<u8> {
    let mut body = header(DESCRIBE_CLIENT_QUOTAS);
    // Components: one, match type 0 (exact name).
    body.extend(1i32.to_be_bytes());
    string(&mut body, "client-id");
    body.push(0);
    string(&mut body, client_id);
    // strict: only entities with exactly these components.
    body.push(1);
    framed(body)
}

/// A response, read field by field.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let bytes = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or_else(|| Error::Quota("a truncated response".into()))?;
        self.at += n;
        Ok(bytes)
    }

    fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// A string or nullable string (null as empty).
    fn string(&mut self) -> Result<String> {
        match self.i16()? {
            ..0 => Ok(String::new()),
            n => Ok(String::from_utf8_lossy(self.take(n as usize)?).into_owned()),
        }
    }

    fn correlation(&mut self) -> Result<()> {
        match self.i32()? {
            1 => Ok(()),
            other => Err(Error::Quota(format!("response to request {other}, not 1"))),
        }
    }
}

/// DescribeClientQuotas v0 response: the first entity's quota values.
fn parse_describe(response: &[u8]) -> Result<Vec<(String, f64)>> {
    let mut r = Reader {
        bytes: response,
        at: 0,
    };
    r.correlation()?;
    let _throttle_ms = r.i32()?;
    let code = r.i16()?;
    let message = r.string()?;
    if code != 0 {
        return Err(Error::Quota(format!("error code {code}: {message}")));
    }
    let mut values = Vec::new();
    if r.i32()? >= 1 {
        for _ in 0..r.i32()? {
            r.string()?;
            r.string()?;
        }
        for _ in 0..r.i32()? {
            let key = r.string()?;
            values.push((key, r.f64()?));
        }
    }
    Ok(values)
}

/// One AlterClientQuotas v0 request, framed: a client-id entity and one op.
fn alter_request(client_id: &str, key: &str, value: Option<f64>) -> Vec<u8> {
    let mut body = header(ALTER_CLIENT_QUOTAS);
    // Entries: one, whose entity is the client id.
    body.extend(1i32.to_be_bytes());
    body.extend(1i32.to_be_bytes());
    string(&mut body, "client-id");
    string(&mut body, client_id);
    // Ops: set the key to the value, or remove it.
    body.extend(1i32.to_be_bytes());
    string(&mut body, key);
    body.extend(value.unwrap_or(0.0).to_be_bytes());
    body.push(u8::from(value.is_none()));
    // validate_only
    body.push(0);
    framed(body)
}

fn string(out: &mut Vec<u8>, text: &str) {
    out.extend((text.len() as i16).to_be_bytes());
    out.extend(text.as_bytes());
}

fn exchange(server: &str, request: &[u8]) -> Result<Vec<u8>> {
    let io = |e: std::io::Error| Error::Quota(format!("{server}: {e}"));
    let addr = server
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| Error::Quota(format!("{server}: no address")))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(io)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.write_all(request).map_err(io)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).map_err(io)?;
    let size = i32::from_be_bytes(size);
    if !(0..=1 << 20).contains(&size) {
        return Err(Error::Quota(format!("{server}: a {size}-byte response")));
    }
    let mut response = vec![0u8; size as usize];
    stream.read_exact(&mut response).map_err(io)?;
    Ok(response)
}

/// AlterClientQuotas v0 response: correlation id, throttle time, then per
/// entry an error code and message (and the entity, not needed).
fn parse_response(response: &[u8]) -> Result<()> {
    let mut r = Reader {
        bytes: response,
        at: 0,
    };
    r.correlation()?;
    let _throttle_ms = r.i32()?;
    if r.i32()? < 1 {
        return Err(Error::Quota("no entry in the response".into()));
    }
    let code = r.i16()?;
    let message = r.string()?;
    match code {
        0 => Ok(()),
        code => Err(Error::Quota(format!("error code {code}: {message}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_the_protocols_version_0_encoding() {
        let request = alter_request("analytics", CONSUMER_BYTE_RATE, Some(1_048_576.0));
        let mut expected = Vec::new();
        expected.extend([0, 49, 0, 0, 0, 0, 0, 1]);
        expected.extend([0, 17]);
        expected.extend(b"storefront-quotas");
        expected.extend([0, 0, 0, 1, 0, 0, 0, 1]);
        expected.extend([0, 9]);
        expected.extend(b"client-id");
        expected.extend([0, 9]);
        expected.extend(b"analytics");
        expected.extend([0, 0, 0, 1, 0, 18]);
        expected.extend(b"consumer_byte_rate");
        expected.extend(1_048_576f64.to_be_bytes());
        expected.extend([0, 0]);
        assert_eq!(request[..4], (expected.len() as i32).to_be_bytes());
        assert_eq!(request[4..], expected);
        let removal = alter_request("analytics", CONSUMER_BYTE_RATE, None);
        assert_eq!(
            removal[removal.len() - 2..],
            [1, 0],
            "remove, not validate only"
        );
    }

    #[test]
    fn an_error_in_the_response_is_reported_with_its_message() {
        let mut response = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 42, 0, 3];
        response.extend(b"bad");
        let error = parse_response(&response).unwrap_err().to_string();
        assert!(error.contains("42") && error.contains("bad"), "{error}");
        let ok = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 255, 255];
        assert!(parse_response(&ok).is_ok());
        assert!(parse_response(&ok[..10]).is_err());
    }
}
