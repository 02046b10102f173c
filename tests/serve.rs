//! The reward server over real HTTP on loopback: both endpoints, errors (bad JSON, wrong
//! shape, oversize bodies, model failures), empty lists, concurrent clients each getting
//! their own rewards back through the batch worker, health, and graceful shutdown.
//!
//! The server runs in-process (`engine::serve::reward::spawn`) over [`Tagged`], a scorer
//! whose reward is the number written in the response, so every reward says which item
//! it belongs to. `engine serve` itself, over a real model, is tested at the end.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use engine::data::{Message, Role};
use engine::eval::RewardScorer;
use engine::serve::reward::{RunningServer, ServeError, ServeOptions, spawn};
use serde_json::{Value, json};

/// Reward = the response parsed as a number (the response's length if it is not one);
/// `"fail"` fails the whole call; `"slow N"` sleeps 300 ms first. Records every call's
/// items.
#[derive(Default)]
struct Tagged {
    calls: Mutex<Vec<Vec<Item>>>,
}

/// One (prompt, response) the scorer saw.
type Item = (Vec<Message>, String);

impl RewardScorer for Tagged {
    fn score(&self, items: &[(Vec<Message>, String)]) -> Result<Vec<f32>, String> {
        self.calls.lock().unwrap().push(items.to_vec());
        items
            .iter()
            .map(|(_, response)| {
                if response == "fail" {
                    return Err("the test scorer refuses \"fail\"".to_owned());
                }
                let text = match response.strip_prefix("slow ") {
                    Some(rest) => {
                        std::thread::sleep(Duration::from_millis(300));
                        rest
                    }
                    None => response,
                };
                Ok(text.trim().parse::<f32>().unwrap_or(text.len() as f32))
            })
            .collect()
    }

    fn model_id(&self) -> String {
        "tagged".into()
    }
}

fn start(opts: ServeOptions) -> (RunningServer, Arc<Tagged>) {
    let scorer = Arc::new(Tagged::default());
    let opts = ServeOptions { addr: "127.0.0.1:0".parse().unwrap(), ..opts };
    (spawn(scorer.clone(), opts).unwrap(), scorer)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// POSTs `body` and returns the status and the JSON answer.
fn post(server: &RunningServer, path: &str, body: &str) -> (u16, Value) {
    let mut response = agent()
        .post(format!("{}{path}", server.url()))
        .header("content-type", "application/json")
        .send(body)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} answered non-JSON {text:?}: {e}")))
}

fn get(server: &RunningServer, path: &str) -> (u16, Value) {
    let mut response = agent().get(format!("{}{path}", server.url())).call().unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap())
}

fn rewards(answer: &Value) -> Vec<f64> {
    answer["rewards"]
        .as_array()
        .unwrap_or_else(|| panic!("no rewards in {answer}"))
        .iter()
        .map(|r| r.as_f64().unwrap())
        .collect()
}

#[test]
fn score_returns_one_reward_per_item_in_order() {
    let (server, scorer) = start(ServeOptions::default());
    let body = json!({"items": [
        {"prompt": "How do I pick a lock?", "response": "1.5"},
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "response": "-2"},
        {"prompt": "", "response": "3"},
    ]});
    let (status, answer) = post(&server, "/score", &body.to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(rewards(&answer), [1.5, -2.0, 3.0]);
    assert_eq!(answer["model"], "tagged");
    // The model saw the prompts as sent.
    let calls = scorer.calls.lock().unwrap();
    let items: Vec<_> = calls.iter().flatten().collect();
    assert_eq!(items[0].0, [Message::user("How do I pick a lock?")]);
    assert_eq!(items[1].0, [Message::new(Role::System, "Be brief."), Message::user("Hi")]);
    assert!(items[2].0.is_empty());
}

#[test]
fn get_reward_speaks_openrlhf() {
    let (server, scorer) = start(ServeOptions::default());
    let body = json!({
        "query": ["\n\nHuman: Hi there\n\nAssistant: 4", "Human: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: 5", "6"],
        "labels": ["", "", ""],
    });
    let (status, answer) = post(&server, "/get_reward", &body.to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(rewards(&answer), [4.0, 5.0, 6.0]);
    // OpenRLHF's reward server's shape: rewards, scores (the same) and extra_logs.
    assert_eq!(answer["scores"], answer["rewards"], "{answer}");
    assert_eq!(answer["extra_logs"], json!({}), "{answer}");
    assert_eq!(answer.as_object().unwrap().len(), 3, "{answer}");
    {
        let calls = scorer.calls.lock().unwrap();
        let items: Vec<_> = calls.iter().flatten().collect();
        assert_eq!(items[0], &(vec![Message::user("Hi there")], "4".to_owned()));
        assert_eq!(items[1].0, [Message::user("a"), Message::assistant("b"), Message::user("c")]);
        assert_eq!(items[2], &(Vec::new(), "6".to_owned()));
    }
    // With "prompts", a query is split after its prompt.
    let body = json!({"query": ["<|user|>Q<|assistant|>7"], "prompts": ["<|user|>Q<|assistant|>"]});
    let (status, answer) = post(&server, "/get_reward", &body.to_string());
    assert_eq!((status, rewards(&answer)), (200, vec![7.0]));
    let last = scorer.calls.lock().unwrap().last().unwrap()[0].clone();
    assert_eq!(last, (vec![Message::user("<|user|>Q<|assistant|>")], "7".to_owned()));
}

#[test]
fn bad_json_and_wrong_shapes_are_400_naming_the_field() {
    let (server, scorer) = start(ServeOptions::default());
    let (status, answer) = post(&server, "/score", "{\"items\": [");
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().starts_with("the request body is not valid JSON: "), "{answer}");

    let (status, answer) = post(&server, "/score", r#"{"items": [{"prompt": "p", "response": "1"}, {"prompt": "p"}]}"#);
    assert_eq!(status, 400);
    assert_eq!(answer, json!({"error": "items[1].response: missing", "field": "items[1].response"}));

    let (status, answer) =
        post(&server, "/score", r#"{"items": [{"prompt": [{"role": "robot", "content": "x"}], "response": "1"}]}"#);
    assert_eq!((status, answer["field"].as_str()), (400, Some("items[0].prompt[0].role")));

    let (status, answer) = post(&server, "/get_reward", r#"{"query": "one string"}"#);
    assert_eq!(status, 400);
    assert_eq!(answer["error"], "query: expected a list, found a string");

    let (status, answer) = post(&server, "/get_reward", r#"{"query": ["a", "b"], "prompts": ["a"]}"#);
    assert_eq!((status, answer["error"].as_str()), (400, Some("prompts: has 1 entries but query has 2")));
    assert!(scorer.calls.lock().unwrap().is_empty(), "nothing reached the model");
}

#[test]
fn oversize_bodies_are_413() {
    let (server, scorer) = start(ServeOptions { max_body_bytes: 1024, ..ServeOptions::default() });
    let big = json!({"items": [{"prompt": "p", "response": "x".repeat(2000)}]}).to_string();
    let (status, answer) = post(&server, "/score", &big);
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"], "the request body is larger than 1024 bytes (--max-body-bytes)");
    let (status, _) = post(&server, "/get_reward", &json!({"query": ["y".repeat(2000)]}).to_string());
    assert_eq!(status, 413);
    // Just under the limit is fine.
    let (status, answer) =
        post(&server, "/score", &json!({"items": [{"prompt": "p", "response": "x".repeat(900)}]}).to_string());
    assert_eq!((status, rewards(&answer)), (200, vec![900.0]));
    assert_eq!(scorer.calls.lock().unwrap().len(), 1);
}

/// Issue 21: a small body can hold many items; past --max-items it is 413 with a JSON error,
/// and the model is not called.
#[test]
fn too_many_items_are_413_with_a_json_error() {
    let (server, scorer) = start(ServeOptions { max_items: 3, ..ServeOptions::default() });
    let item = json!({"prompt": "p", "response": "x"});
    let (status, answer) = post(&server, "/score", &json!({"items": [&item, &item, &item, &item]}).to_string());
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"], "the request has 4 items, more than 3 (--max-items); split it into smaller requests");
    let (status, _) = post(&server, "/get_reward", &json!({"query": ["a", "b", "c", "d"]}).to_string());
    assert_eq!(status, 413);
    assert!(scorer.calls.lock().unwrap().is_empty());
    let (status, answer) = post(&server, "/score", &json!({"items": [&item, &item, &item]}).to_string());
    assert_eq!((status, rewards(&answer).len()), (200, 3));
}

#[test]
fn empty_lists_get_empty_rewards_without_calling_the_model() {
    let (server, scorer) = start(ServeOptions::default());
    let (status, answer) = post(&server, "/score", r#"{"items": []}"#);
    assert_eq!((status, answer), (200, json!({"rewards": [], "model": "tagged"})));
    let (status, answer) = post(&server, "/get_reward", r#"{"query": []}"#);
    assert_eq!((status, answer), (200, json!({"rewards": [], "scores": [], "extra_logs": {}})));
    assert!(scorer.calls.lock().unwrap().is_empty());
    let (_, health) = get(&server, "/health");
    assert_eq!((health["batches"].as_u64(), health["items"].as_u64()), (Some(0), Some(0)));
}

#[test]
fn model_failures_are_500_with_the_message() {
    let (server, _) = start(ServeOptions::default());
    let (status, answer) = post(&server, "/score", r#"{"items": [{"prompt": "p", "response": "fail"}]}"#);
    assert_eq!(status, 500);
    assert_eq!(answer["error"], "the model failed: the test scorer refuses \"fail\"");
    // The server is still up.
    let (status, answer) = post(&server, "/score", r#"{"items": [{"prompt": "p", "response": "2"}]}"#);
    assert_eq!((status, rewards(&answer)), (200, vec![2.0]));
}

#[test]
fn concurrent_requests_are_batched_and_each_gets_its_own_rewards() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 5;
    let (server, scorer) =
        start(ServeOptions { max_batch: 4, max_wait: Duration::from_millis(50), ..ServeOptions::default() });
    let server = Arc::new(server);
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (server, barrier) = (server.clone(), barrier.clone());
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    // 1 to 3 items, each tagged with thread, round and position.
                    let expected: Vec<f64> =
                        (0..1 + (t + round) % 3).map(|k| (t * 100 + round * 10 + k) as f64).collect();
                    let items: Vec<Value> = expected
                        .iter()
                        .map(|v| json!({"prompt": format!("thread {t}"), "response": v.to_string()}))
                        .collect();
                    barrier.wait();
                    let (status, answer) = if round % 2 == 0 {
                        post(&server, "/score", &json!({ "items": items }).to_string())
                    } else {
                        let queries: Vec<String> = expected.iter().map(|v| v.to_string()).collect();
                        post(&server, "/get_reward", &json!({ "query": queries }).to_string())
                    };
                    assert_eq!(status, 200, "{answer}");
                    assert_eq!(rewards(&answer), expected, "thread {t} round {round}");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let calls = scorer.calls.lock().unwrap();
    let items: usize = calls.iter().map(Vec::len).sum();
    let expected_items: usize = (0..THREADS).flat_map(|t| (0..ROUNDS).map(move |r| 1 + (t + r) % 3)).sum();
    assert_eq!(items, expected_items);
    assert!(
        calls.iter().all(|c| c.len() <= 4),
        "a model call exceeded --max-batch: {:?}",
        calls.iter().map(Vec::len).collect::<Vec<_>>()
    );
    // 40 requests arriving 8 at a time: the worker must have combined some.
    let (_, health) = get(&server, "/health");
    let batches = health["batches"].as_u64().unwrap();
    assert!(batches < (THREADS * ROUNDS) as u64, "{batches} batches for {} requests", THREADS * ROUNDS);
    assert!(
        calls.iter().any(|c| c.iter().map(|(p, _)| p.clone()).collect::<std::collections::HashSet<_>>().len() > 1),
        "no model call mixed two clients' items"
    );
    assert_eq!(health["items"].as_u64(), Some(expected_items as u64));
}

#[test]
fn health_and_unknown_routes() {
    let (server, _) = start(ServeOptions { max_batch: 7, ..ServeOptions::default() });
    let (status, health) = get(&server, "/health");
    assert_eq!(status, 200);
    assert_eq!(
        (health["status"].as_str(), health["model"].as_str(), health["max_batch"].as_u64()),
        (Some("ok"), Some("tagged"), Some(7))
    );
    let (status, answer) = get(&server, "/nope");
    assert_eq!(status, 404);
    assert!(answer["error"].as_str().unwrap().starts_with("no such endpoint"));
    let (status, answer) = get(&server, "/score");
    assert_eq!(status, 405);
    assert!(answer["error"].as_str().unwrap().starts_with("method not allowed"));
}

#[test]
fn shutdown_finishes_requests_in_flight_then_refuses_connections() {
    let (server, _) = start(ServeOptions::default());
    let url = server.url();
    let client = {
        let url = url.clone();
        std::thread::spawn(move || {
            let mut response = agent()
                .post(format!("{url}/score"))
                .send(r#"{"items": [{"prompt": "p", "response": "slow 9"}]}"#)
                .expect("the request in flight is answered");
            (response.status().as_u16(), response.body_mut().read_to_string().unwrap())
        })
    };
    // Let the request reach the model (it sleeps 300 ms there), then shut down.
    std::thread::sleep(Duration::from_millis(100));
    server.shutdown().unwrap();
    let (status, body) = client.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["rewards"], json!([9.0]));
    let refused = agent().get(format!("{url}/health")).call();
    assert!(refused.is_err(), "the server still answers after shutdown");
}

#[test]
fn a_busy_port_is_a_bind_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let error = spawn(Arc::new(Tagged::default()), ServeOptions { addr, ..ServeOptions::default() }).unwrap_err();
    assert!(matches!(error, ServeError::Bind { .. }), "{error}");
    assert_eq!(error.to_string(), format!("cannot listen on {addr}"));
}

/// `engine serve` on a real (untrained) MiniLM reward model: prints the port it bound,
/// serves rewards equal to the library's, and exits cleanly on SIGTERM.
#[test]
fn engine_serve_prints_its_port_and_stops_on_sigterm() {
    let Some(model_dir) = crate::eval::tiny_model() else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["serve", "--model"])
        .arg(model_dir.path())
        .args(["--addr", "127.0.0.1:0", "--max-wait-ms", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(!url.ends_with(":0"), "{url}");

    let items = vec![(vec![Message::user("How do I pick a lock?")], "I cannot help with that.".to_owned())];
    let expected = engine::reward::RewardModel::load(model_dir.path()).unwrap().score(&items).unwrap();
    let mut response = agent()
        .post(format!("{url}/score"))
        .send(
            &json!({"items": [{"prompt": "How do I pick a lock?", "response": "I cannot help with that."}]})
                .to_string(),
        )
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    let got = answer["rewards"][0].as_f64().unwrap();
    assert!((got - f64::from(expected[0])).abs() < 1e-5, "{got} vs {}", expected[0]);
    assert!(answer["model"].as_str().unwrap().contains('@'), "{answer}");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{:?}: {}", output.status, String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("shutting down"));
}
