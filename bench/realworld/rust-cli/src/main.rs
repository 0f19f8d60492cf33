//! wordfreq: prints the most frequent words on stdin (or of a built-in sample without input).
mod count;

use std::io::Read;

const SAMPLE: &str = "the quick brown fox jumps over the lazy dog the fox";

fn main() {
    let mut args = std::env::args().skip(1);
    let mut top = 3usize;
    while let Some(a) = args.next() {
        if a == "--top" {
            top = args.next().and_then(|n| n.parse().ok()).unwrap_or(top);
        }
    }
    let mut text = String::new();
    // Without input (`run` gives /dev/null), the sample is counted.
    let _ = std::io::stdin().lock().read_to_string(&mut text);
    if text.trim().is_empty() {
        text = SAMPLE.to_string();
    }
    for (word, n) in count::top_words(&text, top) {
        println!("{word} {n}");
    }
}
