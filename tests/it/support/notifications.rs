//! The other ends of notifications: a webhook receiver (an HTTP server recording every request, told to
//! fail on demand) and a tiny SMTP server (enough of RFC 5321 to receive: EHLO, MAIL, RCPT, DATA, QUIT).

use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status answered; 0 for a request held (see [`WebhookReceiver::hold_all`]).
    pub answered: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Vec<Received>,
    /// Answer this status to every request while set.
    failing: Option<u16>,
    /// Answer 500 to this many requests more.
    fail_next: usize,
}

/// A webhook receiver on a loopback port.
pub struct WebhookReceiver {
    pub url: String,
    state: Arc<Mutex<ReceiverState>>,
    /// While true, requests are recorded and left unanswered until it turns false.
    held: Arc<tokio::sync::watch::Sender<bool>>,
    handle: actix_web::dev::ServerHandle,
}

async fn receive(
    state: web::Data<Mutex<ReceiverState>>,
    held: web::Data<tokio::sync::watch::Sender<bool>>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let mut release = held.subscribe();
    if *release.borrow_and_update() {
        state.lock().unwrap().received.push(Received {
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body: body.to_vec(),
            answered: 0,
        });
        let _ = release.wait_for(|held| !*held).await;
        return HttpResponse::Ok().body("released");
    }
    let mut state = state.lock().unwrap();
    let answered = if let Some(status) = state.failing {
        status
    } else if state.fail_next > 0 {
        state.fail_next -= 1;
        500
    } else {
        200
    };
    state.received.push(Received {
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
        answered,
    });
    HttpResponse::build(actix_web::http::StatusCode::from_u16(answered).unwrap()).body(
        if answered == 200 {
            "ok"
        } else {
            "receiver down"
        },
    )
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let data = web::Data::from(state.clone());
        let held = Arc::new(tokio::sync::watch::Sender::new(false));
        let held_data = web::Data::from(held.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(held_data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind the webhook receiver to a loopback port");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url: format!("http://{addr}/hooks"),
            state,
            held,
            handle,
        }
    }

    /// Answers 500 to the next `n` requests.
    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().fail_next = n;
    }

    /// Answers `status` to every request until [`WebhookReceiver::recover`].
    pub fn fail_all(&self, status: u16) {
        self.state.lock().unwrap().failing = Some(status);
    }

    /// Leaves every request unanswered (recorded with `answered: 0`) until [`WebhookReceiver::release`].
    pub fn hold_all(&self) {
        self.held.send_replace(true);
    }

    /// Answers the held requests (200) and stops holding.
    pub fn release(&self) {
        self.held.send_replace(false);
    }

    pub fn recover(&self) {
        self.state.lock().unwrap().failing = None;
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub async fn stop(self) {
        self.release();
        self.handle.stop(false).await;
    }
}

/// One message the SMTP server accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent after DATA (headers and body, dot-unstuffed).
    pub data: String,
}

/// A local SMTP server that accepts every message.
pub struct SmtpServer {
    pub url: String,
    mails: Arc<Mutex<Vec<Mail>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let mails = mails.clone();
            async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(session(socket, mails.clone()));
                }
            }
        });
        Self {
            url: format!("smtp://127.0.0.1:{port}"),
            mails,
            task,
        }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(socket: tokio::net::TcpStream, mails: Arc<Mutex<Vec<Mail>>>) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    let _ = write.write_all(b"220 localhost test SMTP\r\n").await;
    let (mut from, mut to) = (String::new(), Vec::new());
    while let Ok(Some(line)) = lines.next_line().await {
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250 localhost\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = line[10..].trim().to_owned();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(line[8..].trim().to_owned());
            b"250 OK\r\n"
        } else if upper == "DATA" {
            let _ = write.write_all(b"354 go ahead\r\n").await;
            let mut data = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if line == "." {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
                data.push('\n');
            }
            mails.lock().unwrap().push(Mail {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data,
            });
            b"250 OK queued\r\n"
        } else if upper == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"250 OK\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}
