//! Time to first token through a proxy: the comparative benchmark's streaming client.
//!
//! Sends the same streaming chat request again and again on one keep-alive connection
//! (concurrency 1) and measures, for each, the time from the first byte written to the arrival
//! of the first SSE `data:` event in the body (chunked framing decoded), then reads the stream
//! to its end before sending the next. It speaks plain HTTP/1.1 over std's `TcpStream` with
//! Nagle off, so its own cost is a few microseconds and the same for every target.
//!
//! Usage: `compare-ttft --addr 127.0.0.1:PORT --requests 500 --warmup 50 [-H 'Name: value']...
//! --body '{...}'`. Prints one JSON object: counts and the p50/p90/p99/max of the time to the
//! first event and of the whole stream, in microseconds. Exits non-zero when any response is
//! not a 200 event stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Options {
    addr: SocketAddr,
    path: String,
    requests: usize,
    warmup: usize,
    headers: Vec<String>,
    body: String,
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut addr = None;
    let mut path = "/v1/chat/completions".to_owned();
    let (mut requests, mut warmup) = (500, 50);
    let mut headers = Vec::new();
    let mut body = None;
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = Some(value()?.parse().map_err(|e| format!("--addr: {e}"))?),
            "--path" => path = value()?,
            "--requests" => requests = value()?.parse().map_err(|e| format!("--requests: {e}"))?,
            "--warmup" => warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "-H" | "--header" => headers.push(value()?),
            "--body" => body = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Options {
        addr: addr.ok_or("--addr is required")?,
        path,
        requests,
        warmup,
        headers,
        body: body.ok_or("--body is required")?,
    })
}

/// One streamed answer as the client saw it.
struct Timed {
    first_event: Duration,
    whole: Duration,
    /// The server will close the connection after this response.
    closes: bool,
}

fn request_bytes(options: &Options) -> Vec<u8> {
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Accept: text/event-stream\r\nContent-Length: {}\r\n",
        options.path,
        options.addr,
        options.body.len()
    );
    for header in &options.headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(options.body.as_bytes());
    bytes
}

fn connect(addr: SocketAddr) -> Result<BufReader<TcpStream>, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    Ok(BufReader::with_capacity(64 * 1024, stream))
}

fn read_line(conn: &mut BufReader<TcpStream>, line: &mut Vec<u8>) -> Result<(), String> {
    line.clear();
    match conn.read_until(b'\n', line) {
        Ok(0) => Err("connection closed mid-response".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("read: {e}")),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Sends one request and reads its whole response, timing the first `data:` event.
fn one_stream(conn: &mut BufReader<TcpStream>, request: &[u8]) -> Result<Timed, String> {
    let started = Instant::now();
    conn.get_mut()
        .write_all(request)
        .map_err(|e| format!("write: {e}"))?;
    let mut line = Vec::new();
    read_line(conn, &mut line)?;
    let status_line = String::from_utf8_lossy(&line).trim().to_owned();
    let status_ok = status_line.split_whitespace().nth(1) == Some("200");
    let (mut chunked, mut length, mut closes, mut event_stream) = (false, None, false, false);
    loop {
        read_line(conn, &mut line)?;
        let header = String::from_utf8_lossy(&line).to_ascii_lowercase();
        let header = header.trim();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        match (name.trim(), value.trim()) {
            ("transfer-encoding", v) => chunked = v.contains("chunked"),
            ("content-length", v) => length = v.parse::<usize>().ok(),
            ("connection", v) => closes = v.contains("close"),
            ("content-type", v) => event_stream = v.starts_with("text/event-stream"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    let mut first_event = None;
    let seen = |body: &[u8], first_event: &mut Option<Duration>| {
        if first_event.is_none() && contains(body, b"data:") {
            *first_event = Some(started.elapsed());
        }
    };
    if chunked {
        loop {
            read_line(conn, &mut line)?;
            let size_text = String::from_utf8_lossy(&line);
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            if size == 0 {
                // Trailers, then the empty line that ends the message.
                loop {
                    read_line(conn, &mut line)?;
                    if line == b"\r\n" || line == b"\n" {
                        break;
                    }
                }
                break;
            }
            let from = body.len();
            body.resize(from + size + 2, 0);
            conn.read_exact(&mut body[from..])
                .map_err(|e| format!("read chunk: {e}"))?;
            body.truncate(from + size);
            seen(&body, &mut first_event);
        }
    } else {
        let mut piece = [0u8; 16 * 1024];
        loop {
            if length.is_some_and(|l| body.len() >= l) {
                break;
            }
            let n = conn.read(&mut piece).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                if length.is_some() {
                    return Err("connection closed mid-body".into());
                }
                closes = true; // delimited by close
                break;
            }
            body.extend_from_slice(&piece[..n]);
            seen(&body, &mut first_event);
        }
    }
    let whole = started.elapsed();
    if !status_ok || !event_stream {
        return Err(format!(
            "{status_line} (event stream: {event_stream}): {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    let first_event = first_event.ok_or("the stream carried no data: event")?;
    Ok(Timed {
        first_event,
        whole,
        closes,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> u128 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_micros()
}

fn summary(mut values: Vec<Duration>) -> String {
    values.sort();
    format!(
        "{{\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"max_us\":{}}}",
        percentile(&values, 0.50),
        percentile(&values, 0.90),
        percentile(&values, 0.99),
        percentile(&values, 1.0)
    )
}

fn run(options: &Options) -> Result<String, String> {
    if options.requests == 0 {
        return Err("--requests must be at least 1".into());
    }
    let request = request_bytes(options);
    let mut conn = connect(options.addr)?;
    let (mut first_events, mut wholes) = (Vec::new(), Vec::new());
    let mut reconnects = 0;
    for i in 0..options.warmup + options.requests {
        let timed = one_stream(&mut conn, &request)?;
        if i >= options.warmup {
            first_events.push(timed.first_event);
            wholes.push(timed.whole);
        }
        if timed.closes {
            conn = connect(options.addr)?;
            reconnects += 1;
        }
    }
    Ok(format!(
        "{{\"requests\":{},\"warmup\":{},\"reconnects\":{reconnects},\"first_event\":{},\"whole_stream\":{}}}",
        options.requests,
        options.warmup,
        summary(first_events),
        summary(wholes)
    ))
}

fn main() -> ExitCode {
    match parse_args().and_then(|options| run(&options)) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("compare-ttft: {e}");
            ExitCode::FAILURE
        }
    }
}
