;; The coordinator's averaging kernels in WebAssembly SIMD: out[i] = (in_0[i] + in_1[i] + … + in_{K-1}[i]) / K.
;;
;; Bit-identical to meanRangeInto (packages/core/src/average.ts), i.e. to the JS expression
;; `out[i] = (a[i] + b[i] + …) / K` on Float32Arrays: each float32 input is widened to float64 (exact), the
;; float64 sum is taken in rank order starting from input 0 (so −0 + −0 stays −0), divided once by K in
;; float64 and rounded once to float32 (to nearest even, like a Float32Array store). SIMD changes how many
;; lanes run at once, never the order or the precision of an operation; only NaN payloads may differ from JS.
;; WebAssembly floats keep subnormals (no flush-to-zero), so tiny inputs and tiny means match too.
;;
;; Calling convention (all three kernels): (out, src, stride, k, n). The K inputs start at byte address src and
;; lie `stride` bytes apart (StagedMean's staging slots); out is the byte address of the result; n counts
;; floats. out may equal any input's address: every lane is read before it is written. The memory is
;; imported, so each StagedMean owns one while the module is compiled once per process.
;;
;; Per 4 floats the vector loops load each input as two 64-bit halves (v128.load64_zero), widen each pair with
;; f64x2.promote_low_f32x4, add, scale, narrow each pair with f32x4.demote_f64x2_zero (pair in lanes 0–1,
;; zeros above) and join the two pairs with one shuffle into a single 16-byte store. Loading halves instead of
;; loading 16 bytes and shuffling the high pair down measured the same and reads more plainly.
;;
;; Every kernel returns 1 when an output float is NaN or ±Inf, else 0 (weights are checked finite in the
;; averaging pass itself, not in a pass of their own). Per 4 floats that is one and and one unsigned max of
;; the stored vector's exponent bits (the largest reaches 0x7f800000 only if some float's are all ones),
;; compared once after the loop: in cache ~1.2× the kernel's time, against ~2.5× for a separate JS pass.
;;
;; Rebuild mean-wasm.ts after editing: npm run build:wasm
(module
  (import "env" "memory" (memory 1))

  ;; Floats [i, n) one at a time: the n % 4 tail every vector loop leaves. Divides by K for every K, which for
  ;; K = 2 and 4 gives exactly the vector loops' multiplication by 0.5 and 0.25.
  ;; Returns 1 if one of those floats came out NaN or ±Inf (exponent bits all ones).
  (func $tail (param $out i32) (param $src i32) (param $stride i32) (param $k i32) (param $i i32) (param $n i32) (result i32)
    (local $off i32) (local $p i32) (local $j i32) (local $sum f64) (local $kf f64) (local $r f32) (local $bad i32)
    (local.set $kf (f64.convert_i32_u (local.get $k)))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $off (i32.shl (local.get $i) (i32.const 2)))
        (local.set $p (i32.add (local.get $src) (local.get $off)))
        (local.set $sum (f64.promote_f32 (f32.load (local.get $p))))
        (local.set $j (i32.const 1))
        (block $summed
          (loop $add
            (br_if $summed (i32.ge_u (local.get $j) (local.get $k)))
            (local.set $p (i32.add (local.get $p) (local.get $stride)))
            (local.set $sum (f64.add (local.get $sum) (f64.promote_f32 (f32.load (local.get $p)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $add)))
        (local.set $r (f32.demote_f64 (f64.div (local.get $sum) (local.get $kf))))
        (f32.store (i32.add (local.get $out) (local.get $off)) (local.get $r))
        (local.set $bad (i32.or (local.get $bad)
          (i32.eq (i32.and (i32.reinterpret_f32 (local.get $r)) (i32.const 0x7f800000)) (i32.const 0x7f800000))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
    (local.get $bad))

  ;; Any K ≥ 1, dividing by K. Inner loop over the inputs at p, p + stride, p + 2·stride, …
  ;; f64x2.div is this loop's bottleneck at small K (~15 ms per 25M floats, in cache or not), hence mean2 and
  ;; mean4; for other K a multiplication by 1/K would not round like the division, so it stays.
  (func (export "mean") (param $out i32) (param $src i32) (param $stride i32) (param $k i32) (param $n i32) (result i32)
    (local $off i32) (local $end i32) (local $p i32) (local $j i32)
    (local $lo v128) (local $hi v128) (local $kv v128) (local $r v128) (local $bad v128) (local $exp v128)
    (local.set $exp (i32x4.splat (i32.const 0x7f800000)))
    (local.set $kv (f64x2.splat (f64.convert_i32_u (local.get $k))))
    (local.set $end (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2)))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $off) (local.get $end)))
        (local.set $p (i32.add (local.get $src) (local.get $off)))
        (local.set $lo (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $p))))
        (local.set $hi (f64x2.promote_low_f32x4 (v128.load64_zero offset=8 (local.get $p))))
        (local.set $j (i32.const 1))
        (block $summed
          (loop $add
            (br_if $summed (i32.ge_u (local.get $j) (local.get $k)))
            (local.set $p (i32.add (local.get $p) (local.get $stride)))
            (local.set $lo (f64x2.add (local.get $lo)
              (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $p)))))
            (local.set $hi (f64x2.add (local.get $hi)
              (f64x2.promote_low_f32x4 (v128.load64_zero offset=8 (local.get $p)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $add)))
        (local.set $r
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (f32x4.demote_f64x2_zero (f64x2.div (local.get $lo) (local.get $kv)))
            (f32x4.demote_f64x2_zero (f64x2.div (local.get $hi) (local.get $kv)))))
        (v128.store (i32.add (local.get $out) (local.get $off)) (local.get $r))
        (local.set $bad (i32x4.max_u (local.get $bad) (v128.and (local.get $r) (local.get $exp))))
        (local.set $off (i32.add (local.get $off) (i32.const 16)))
        (br $each)))
    (i32.or (v128.any_true (i32x4.eq (local.get $bad) (local.get $exp)))
      (call $tail (local.get $out) (local.get $src) (local.get $stride) (local.get $k)
        (i32.shr_u (local.get $end) (i32.const 2)) (local.get $n))))

  ;; K = 2 only (k is ignored but for the tail). Multiplying by 0.5 is exact, so it equals dividing by 2
  ;; bit for bit; with no division and no inner loop it runs ~1.8× faster than `mean` on cached slots.
  (func (export "mean2") (param $out i32) (param $src i32) (param $stride i32) (param $k i32) (param $n i32) (result i32)
    (local $a i32) (local $b i32) (local $o i32) (local $end i32) (local $half v128)
    (local $r v128) (local $bad v128) (local $exp v128)
    (local.set $exp (i32x4.splat (i32.const 0x7f800000)))
    (local.set $half (f64x2.splat (f64.const 0.5)))
    (local.set $a (local.get $src))
    (local.set $b (i32.add (local.get $src) (local.get $stride)))
    (local.set $o (local.get $out))
    (local.set $end (i32.add (local.get $src) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $a) (local.get $end)))
        (local.set $r
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (f32x4.demote_f64x2_zero (f64x2.mul (local.get $half) (f64x2.add
              (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $a)))
              (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $b))))))
            (f32x4.demote_f64x2_zero (f64x2.mul (local.get $half) (f64x2.add
              (f64x2.promote_low_f32x4 (v128.load64_zero offset=8 (local.get $a)))
              (f64x2.promote_low_f32x4 (v128.load64_zero offset=8 (local.get $b))))))))
        (v128.store (local.get $o) (local.get $r))
        (local.set $bad (i32x4.max_u (local.get $bad) (v128.and (local.get $r) (local.get $exp))))
        (local.set $a (i32.add (local.get $a) (i32.const 16)))
        (local.set $b (i32.add (local.get $b) (i32.const 16)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $each)))
    (i32.or (v128.any_true (i32x4.eq (local.get $bad) (local.get $exp)))
      (call $tail (local.get $out) (local.get $src) (local.get $stride) (local.get $k)
        (i32.shr_u (i32.sub (local.get $end) (local.get $src)) (i32.const 2)) (local.get $n))))

  ;; K = 4 only, like mean2: ((a + b) + c) + d in rank order, times 0.25 (exact, so equal to dividing by 4).
  ;; Four loads per division already hide most of the division, so this gains less: ~8% over `mean` at K = 4.
  (func (export "mean4") (param $out i32) (param $src i32) (param $stride i32) (param $k i32) (param $n i32) (result i32)
    (local $a i32) (local $b i32) (local $c i32) (local $d i32) (local $o i32) (local $end i32)
    (local $quarter v128) (local $r v128) (local $bad v128) (local $exp v128)
    (local.set $exp (i32x4.splat (i32.const 0x7f800000)))
    (local.set $quarter (f64x2.splat (f64.const 0.25)))
    (local.set $a (local.get $src))
    (local.set $b (i32.add (local.get $a) (local.get $stride)))
    (local.set $c (i32.add (local.get $b) (local.get $stride)))
    (local.set $d (i32.add (local.get $c) (local.get $stride)))
    (local.set $o (local.get $out))
    (local.set $end (i32.add (local.get $src) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $a) (local.get $end)))
        (local.set $r
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (f32x4.demote_f64x2_zero (f64x2.mul (local.get $quarter) (f64x2.add (f64x2.add (f64x2.add
              (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $a)))
              (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $b))))
              (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $c))))
              (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $d))))))
            (f32x4.demote_f64x2_zero (f64x2.mul (local.get $quarter) (f64x2.add (f64x2.add (f64x2.add
              (f64x2.promote_low_f32x4 (v128.load64_zero offset=8 (local.get $a)))
              (f64x2.promote_low_f32x4 (v128.load64_zero offset=8 (local.get $b))))
              (f64x2.promote_low_f32x4 (v128.load64_zero offset=8 (local.get $c))))
              (f64x2.promote_low_f32x4 (v128.load64_zero offset=8 (local.get $d))))))))
        (v128.store (local.get $o) (local.get $r))
        (local.set $bad (i32x4.max_u (local.get $bad) (v128.and (local.get $r) (local.get $exp))))
        (local.set $a (i32.add (local.get $a) (i32.const 16)))
        (local.set $b (i32.add (local.get $b) (i32.const 16)))
        (local.set $c (i32.add (local.get $c) (i32.const 16)))
        (local.set $d (i32.add (local.get $d) (i32.const 16)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $each)))
    (i32.or (v128.any_true (i32x4.eq (local.get $bad) (local.get $exp)))
      (call $tail (local.get $out) (local.get $src) (local.get $stride) (local.get $k)
        (i32.shr_u (i32.sub (local.get $end) (local.get $src)) (i32.const 2)) (local.get $n))))
)
