;; The two passes of Pillow's 8-bit bilinear resample (the JS reference is resizeBilinearJs in pil-resize.ts),
;; vectorised with WebAssembly SIMD. Rebuild the committed .wasm with `npm run build:wasm`.
;;
;; Why the results are bit-identical to the JS port: the JS accumulates `half + Σ byte·weight` in doubles, exact
;; for these magnitudes, then `>> 22` takes that sum modulo 2^32 as an int32. i32 lanes compute the same sum modulo
;; 2^32 (wrapping mul/add), so the int32 before the shift is the same whatever the range; the shift is arithmetic in
;; both. The clamp to 0..255 is the two saturating narrows: v >> 22 lies in [-512, 511], so the signed narrow to
;; i16 is exact and the unsigned-saturating narrow to u8 is clip8's clamp.
;;
;; Over-reads and over-writes (the caller, pil-resample-wasm.ts, pads every buffer by 16 bytes): the horizontal
;; pass loads 8 bytes per tap where 3 are used and stores 4 bytes per pixel where 3 are meant; the extra byte lands
;; on the next pixel (or next row), which is written later. The vertical pass works in 16-byte chunks, so a row's
;; last chunk reads and writes up to 15 bytes past the row; those belong to the next output row (written later)
;; or to the padding.
(module
  (memory (export "memory") 1)

  ;; Rows [0, rows) of `src` (rowBytes apart) to `dst` (outW·3 bytes per row). `bounds`: [xmin, count] int32 pairs,
  ;; `weights`: ksize int32 per output pixel (22-bit fixed point), as precomputeCoeffs lays them out.
  (func (export "horizontal")
    (param $src i32) (param $rowBytes i32) (param $rows i32) (param $outW i32)
    (param $bounds i32) (param $weights i32) (param $ksize i32) (param $dst i32)
    (local $row i32) (local $y i32) (local $xx i32) (local $b i32) (local $wp i32) (local $kstride i32)
    (local $p i32) (local $k i32) (local $n i32) (local $acc v128)
    (if (i32.or (i32.le_s (local.get $rows) (i32.const 0)) (i32.le_s (local.get $outW) (i32.const 0)))
      (then (return)))
    (local.set $kstride (i32.shl (local.get $ksize) (i32.const 2)))
    (local.set $row (local.get $src))
    (local.set $y (local.get $rows))
    (loop $rowLoop
      (local.set $b (local.get $bounds))
      (local.set $wp (local.get $weights))
      (local.set $xx (local.get $outW))
      (loop $pixLoop
        (local.set $p (i32.add (local.get $row) (i32.mul (i32.load (local.get $b)) (i32.const 3))))
        (local.set $n (i32.load offset=4 (local.get $b)))
        (local.set $k (local.get $wp))
        (local.set $acc (v128.const i32x4 0x200000 0x200000 0x200000 0x200000))
        (block $tapsDone
          (br_if $tapsDone (i32.le_s (local.get $n) (i32.const 0)))
          (loop $tap
            ;; R, G, B (and the next byte, unused) of one source pixel times its weight
            (local.set $acc
              (i32x4.add (local.get $acc)
                (i32x4.mul
                  (i32x4.extend_low_i16x8_u (v128.load8x8_u (local.get $p)))
                  (v128.load32_splat (local.get $k)))))
            (local.set $p (i32.add (local.get $p) (i32.const 3)))
            (local.set $k (i32.add (local.get $k) (i32.const 4)))
            (br_if $tap (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
        (local.set $acc (i16x8.narrow_i32x4_s
          (i32x4.shr_s (local.get $acc) (i32.const 22)) (i32x4.shr_s (local.get $acc) (i32.const 22))))
        (v128.store32_lane 0 (local.get $dst) (i8x16.narrow_i16x8_u (local.get $acc) (local.get $acc)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 3)))
        (local.set $b (i32.add (local.get $b) (i32.const 8)))
        (local.set $wp (i32.add (local.get $wp) (local.get $kstride)))
        (br_if $pixLoop (local.tee $xx (i32.sub (local.get $xx) (i32.const 1)))))
      (local.set $row (i32.add (local.get $row) (local.get $rowBytes)))
      (br_if $rowLoop (local.tee $y (i32.sub (local.get $y) (i32.const 1))))))

  ;; `outH` rows of rowBytes bytes to `dst`: output row yy is Σ weights·rows [ymin - shift, ymin - shift + count) of
  ;; `src`, where `shift` is the first source row the horizontal pass produced (0 without one).
  (func (export "vertical")
    (param $src i32) (param $rowBytes i32) (param $outH i32) (param $bounds i32) (param $weights i32)
    (param $ksize i32) (param $shift i32) (param $dst i32)
    (local $yy i32) (local $b i32) (local $wp i32) (local $kstride i32) (local $base i32) (local $x i32)
    (local $p i32) (local $k i32) (local $n i32) (local $count i32) (local $v v128) (local $w v128)
    (local $lo v128) (local $hi v128) (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (if (i32.or (i32.le_s (local.get $outH) (i32.const 0)) (i32.le_s (local.get $rowBytes) (i32.const 0)))
      (then (return)))
    (local.set $kstride (i32.shl (local.get $ksize) (i32.const 2)))
    (local.set $b (local.get $bounds))
    (local.set $wp (local.get $weights))
    (local.set $yy (local.get $outH))
    (loop $rowLoop
      (local.set $base (i32.add (local.get $src)
        (i32.mul (i32.sub (i32.load (local.get $b)) (local.get $shift)) (local.get $rowBytes))))
      (local.set $count (i32.load offset=4 (local.get $b)))
      (local.set $x (i32.const 0))
      (loop $chunk
        (local.set $a0 (v128.const i32x4 0x200000 0x200000 0x200000 0x200000))
        (local.set $a1 (local.get $a0))
        (local.set $a2 (local.get $a0))
        (local.set $a3 (local.get $a0))
        (local.set $p (i32.add (local.get $base) (local.get $x)))
        (local.set $k (local.get $wp))
        (local.set $n (local.get $count))
        (block $tapsDone
          (br_if $tapsDone (i32.le_s (local.get $n) (i32.const 0)))
          (loop $tap
            (local.set $v (v128.load (local.get $p)))
            (local.set $w (v128.load32_splat (local.get $k)))
            (local.set $lo (i16x8.extend_low_i8x16_u (local.get $v)))
            (local.set $hi (i16x8.extend_high_i8x16_u (local.get $v)))
            (local.set $a0 (i32x4.add (local.get $a0) (i32x4.mul (i32x4.extend_low_i16x8_u (local.get $lo)) (local.get $w))))
            (local.set $a1 (i32x4.add (local.get $a1) (i32x4.mul (i32x4.extend_high_i16x8_u (local.get $lo)) (local.get $w))))
            (local.set $a2 (i32x4.add (local.get $a2) (i32x4.mul (i32x4.extend_low_i16x8_u (local.get $hi)) (local.get $w))))
            (local.set $a3 (i32x4.add (local.get $a3) (i32x4.mul (i32x4.extend_high_i16x8_u (local.get $hi)) (local.get $w))))
            (local.set $p (i32.add (local.get $p) (local.get $rowBytes)))
            (local.set $k (i32.add (local.get $k) (i32.const 4)))
            (br_if $tap (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
        (v128.store (i32.add (local.get $dst) (local.get $x))
          (i8x16.narrow_i16x8_u
            (i16x8.narrow_i32x4_s (i32x4.shr_s (local.get $a0) (i32.const 22)) (i32x4.shr_s (local.get $a1) (i32.const 22)))
            (i16x8.narrow_i32x4_s (i32x4.shr_s (local.get $a2) (i32.const 22)) (i32x4.shr_s (local.get $a3) (i32.const 22)))))
        (br_if $chunk (i32.lt_s (local.tee $x (i32.add (local.get $x) (i32.const 16))) (local.get $rowBytes))))
      (local.set $dst (i32.add (local.get $dst) (local.get $rowBytes)))
      (local.set $b (i32.add (local.get $b) (i32.const 8)))
      (local.set $wp (i32.add (local.get $wp) (local.get $kstride)))
      (br_if $rowLoop (local.tee $yy (i32.sub (local.get $yy) (i32.const 1)))))))
