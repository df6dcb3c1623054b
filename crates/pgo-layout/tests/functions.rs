//! C3 function ordering: expected answers worked out by hand from the rules
//! documented in `pgo_layout::c3`.

use pgo_layout::order_functions_with;
use pgo_layout::{C3Config, CallEdge, FunctionNode, FunctionOrder, ProcessOrder, order_functions};

fn f(size: u64, weight: u64) -> FunctionNode {
    FunctionNode { size, weight }
}
fn call(caller: usize, callee: usize, weight: u64) -> CallEdge {
    CallEdge {
        caller,
        callee,
        weight,
    }
}

fn assert_valid(res: &FunctionOrder, n: usize) {
    let mut seen = vec![false; n];
    for &i in &res.order {
        assert!(!seen[i], "function {i} twice");
        seen[i] = true;
    }
    assert_eq!(res.order.len(), n);
    let concat: Vec<usize> = res.clusters.iter().flatten().copied().collect();
    assert_eq!(concat, res.hot);
    let mut expect = res.hot.clone();
    expect.extend(&res.cold);
    assert_eq!(res.order, expect);
    assert!(res.cold.windows(2).all(|w| w[0] < w[1]));
}

const MAIN: usize = 0;
const A: usize = 1;
const B: usize = 2;
const C: usize = 3;
const D: usize = 4;
const E: usize = 5;
const F: usize = 6;

/// main → A → B hot chain; C and D hot only in themselves; E, F cold
/// (E calls F but the edge has weight 0).
fn program() -> (Vec<FunctionNode>, Vec<CallEdge>) {
    let nodes = vec![
        f(100, 10),   // main
        f(200, 1000), // A
        f(200, 1000), // B
        f(100, 300),  // C: density 3
        f(400, 100),  // D: density 0.25
        f(50, 0),     // E
        f(50, 0),     // F
    ];
    let edges = vec![call(MAIN, A, 1000), call(A, B, 1000), call(E, F, 0)];
    (nodes, edges)
}

#[test]
fn hot_chain_is_clustered_and_first() {
    // Visit order A, B, C, D, main (weight desc, index asc).
    // A: caller main; 300 B ≤ 4096; density 0.1 ≤ (1010/300)·8 → [main, A].
    // B: caller A; 500 B ≤ 4096; 3.37 ≤ (2010/500)·8 → [main, A, B].
    // Clusters: [main,A,B] 4.02 > [C] 3 > [D] 0.25.
    let (nodes, edges) = program();
    let res = order_functions(&nodes, &edges);
    assert_valid(&res, nodes.len());
    assert_eq!(res.clusters, vec![vec![MAIN, A, B], vec![C], vec![D]]);
    assert_eq!(res.hot, [MAIN, A, B, C, D]);
    assert_eq!(res.cold, [E, F]);
    assert_eq!(res.order, [MAIN, A, B, C, D, E, F]);
    // Same result when visiting by density (A, B, C, D, main: A/B tie → index).
    let by_density = C3Config {
        process_order: ProcessOrder::Density,
        ..C3Config::default()
    };
    assert_eq!(order_functions_with(&nodes, &edges, &by_density), res);
}

#[test]
fn size_limit_splits_clusters() {
    let (nodes, edges) = program();
    // Limit 400: main+A = 300 fits; +B = 500 does not. Clusters by density:
    // [B] 5.0, [main, A] 3.37, [C] 3.0, [D] 0.25.
    let cfg = C3Config {
        max_cluster_size: 400,
        ..C3Config::default()
    };
    let res = order_functions_with(&nodes, &edges, &cfg);
    assert_valid(&res, nodes.len());
    assert_eq!(res.clusters, vec![vec![B], vec![MAIN, A], vec![C], vec![D]]);
    // Limit 250: nothing merges; A and B tie at density 5 → index order.
    let cfg = C3Config {
        max_cluster_size: 250,
        ..C3Config::default()
    };
    let res = order_functions_with(&nodes, &edges, &cfg);
    // main 0.1 < D 0.25.
    assert_eq!(res.hot, [A, B, C, D, MAIN]);
    assert!(res.clusters.iter().all(|c| c.len() == 1));

    // Default 4096-byte limit: A (3000 B) fits after main, B (2000 B) doesn't.
    let mut big = nodes.clone();
    big[A].size = 3000;
    big[B].size = 2000;
    let res = order_functions(&big, &edges);
    assert_valid(&res, big.len());
    assert!(res.clusters.contains(&vec![MAIN, A]));
    assert!(res.clusters.contains(&vec![B]));
    assert!(
        res.clusters
            .iter()
            .all(|c| { c.iter().map(|&i| big[i].size).sum::<u64>() <= 4096 || c.len() == 1 })
    );
}

#[test]
fn callee_joins_most_frequent_caller() {
    // f=3 is called by 1 (100) and 2 (300): joins 2's cluster.
    let nodes = vec![f(10, 1), f(10, 100), f(10, 300), f(10, 400)];
    let edges = vec![call(1, 3, 100), call(2, 3, 300)];
    let res = order_functions(&nodes, &edges);
    assert!(res.clusters.contains(&vec![2, 3]), "{:?}", res.clusters);
    // Tie 200/200: smallest caller index (1) wins.
    let edges = vec![call(2, 3, 200), call(1, 3, 200)];
    let res = order_functions(&nodes, &edges);
    assert!(res.clusters.contains(&vec![1, 3]), "{:?}", res.clusters);
    // Parallel edges are summed: 150 + 150 from 1 beats 200 from 2.
    let edges = vec![call(1, 3, 150), call(2, 3, 200), call(1, 3, 150)];
    let res = order_functions(&nodes, &edges);
    assert!(res.clusters.contains(&vec![1, 3]), "{:?}", res.clusters);
}

#[test]
fn density_and_probability_guards() {
    // main (density 100) calling a big lukewarm function: merged density
    // 1050/4010 = 0.26, and 100 > 0.26 × 8 → refused.
    let nodes = vec![f(10, 1000), f(4000, 50)];
    let edges = vec![call(0, 1, 50)];
    let res = order_functions(&nodes, &edges);
    assert_eq!(res.clusters, vec![vec![0], vec![1]]);
    let no_guard = C3Config {
        max_density_degradation: f64::INFINITY,
        ..C3Config::default()
    };
    let res = order_functions_with(&nodes, &edges, &no_guard);
    assert_eq!(res.clusters, vec![vec![0, 1]]);

    // Callee weight 1000 but the only call arc is 50 < 0.1 × 1000 → refused.
    let nodes = vec![f(10, 1000), f(10, 1000)];
    let edges = vec![call(0, 1, 50)];
    assert_eq!(
        order_functions(&nodes, &edges).clusters,
        vec![vec![0], vec![1]]
    );
    let no_prob = C3Config {
        min_arc_probability: 0.0,
        ..C3Config::default()
    };
    assert_eq!(
        order_functions_with(&nodes, &edges, &no_prob).clusters,
        vec![vec![0, 1]]
    );
}

#[test]
fn zero_weight_function_with_hot_edge_is_hot() {
    // 1 has no samples of its own but is called 500 times: hot, merged after
    // its caller. 2 is cold.
    let nodes = vec![f(10, 500), f(10, 0), f(10, 0)];
    let edges = vec![call(0, 1, 500)];
    let res = order_functions(&nodes, &edges);
    assert_eq!(res.hot, [0, 1]);
    assert_eq!(res.cold, [2]);
}

#[test]
fn cycles_self_edges_and_degenerate_inputs() {
    assert_eq!(order_functions(&[], &[]), FunctionOrder::default());
    let nodes = vec![f(0, 5), f(0, 5), f(0, 0)];
    let edges = vec![call(0, 1, 9), call(1, 0, 9), call(1, 1, 100), call(2, 2, 0)];
    let res = order_functions(&nodes, &edges);
    assert_valid(&res, 3);
    // Visit 0 (tie 5/5 → index): caller 1 → [1, 0]; visit 1: caller 0 is in
    // the same cluster → nothing.
    assert_eq!(res.clusters, vec![vec![1, 0]]);
    assert_eq!(res.cold, [2]);
}

#[test]
#[should_panic(expected = "out of range")]
fn bad_edge_panics() {
    order_functions(&[f(1, 1)], &[call(0, 7, 1)]);
}

#[test]
fn ties_follow_index_order_under_relabeling() {
    // C and D identical (same size, weight, no edges): lower index first,
    // whichever labels they carry.
    let nodes = vec![f(10, 50), f(10, 50), f(10, 80)];
    let res = order_functions(&nodes, &[]);
    assert_eq!(res.hot, [2, 0, 1]);
    // Swap labels 0 and 2: still the heavier one first, ties by index.
    let nodes = vec![f(10, 80), f(10, 50), f(10, 50)];
    let res = order_functions(&nodes, &[]);
    assert_eq!(res.hot, [0, 1, 2]);
    // Permuting the edge list changes nothing.
    let (nodes, mut edges) = program();
    let a = order_functions(&nodes, &edges);
    edges.reverse();
    assert_eq!(order_functions(&nodes, &edges), a);
    assert_eq!(order_functions(&nodes, &edges), a);
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn bench_10k_functions_100k_edges() {
    let mut rng = Rng(7);
    let n = 10_000;
    let nodes: Vec<FunctionNode> = (0..n)
        .map(|_| {
            let w = if rng.below(4) == 0 {
                0
            } else {
                rng.below(10_000)
            };
            f(16 + rng.below(2000), w)
        })
        .collect();
    // Functions 9000.. are never called: the zero-weight ones among them are cold.
    let edges: Vec<CallEdge> = (0..100_000)
        .map(|_| {
            let w = if rng.below(3) == 0 {
                0
            } else {
                rng.below(5000)
            };
            call(rng.below(9000) as usize, rng.below(9000) as usize, w)
        })
        .collect();
    let t = std::time::Instant::now();
    let res = order_functions(&nodes, &edges);
    let dt = t.elapsed();
    assert_valid(&res, n as usize);
    for c in &res.clusters {
        let size: u64 = c.iter().map(|&i| nodes[i].size).sum();
        assert!(size <= 4096 || c.len() == 1);
    }
    assert_eq!(order_functions(&nodes, &edges), res);
    println!(
        "C3: {} functions, {} edges in {:?}; {} hot in {} clusters, {} cold",
        n,
        edges.len(),
        dt,
        res.hot.len(),
        res.clusters.len(),
        res.cold.len()
    );
}
