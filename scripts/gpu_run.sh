#!/usr/bin/env bash
# Runs on a GPU machine from a carried build (scripts/gpu_carry.sh): the CUDA test suite and
# the benchmarks of issues 5 and 6. Logs go to ${OUT:-/tmp/rtvla-gpu}. STEPS picks parts:
# tests, model, flow (action cycle only), split, mps, views, run, mm (GEMM shapes), sk (the
# few-row GEMM per expert shape with its phase trace, under each load path), wg (the same for
# the wgmma GEMM), wgchain (the wgmma path's chain trace, per shape and in the action
# cycle), wa (the wgmma attention's phase trace under WA_VARIANTS, and in a green context),
# ab (VL encode and
# action cycle under each of AB_VARIANTS, environment settings, in one lease), pi0test, gg
# (matmul_rms_geglu's wgmma kernel: its op tests, its GEMM against cuBLASLt + rms_geglu, the
# VL encode with and without it, the policy suites with it on), ncu (Nsight Compute on single
# launches of the VL encode's slowest own kernels), ncumm (the same on its first cuBLAS
# GEMMs), gm (gemm_mc.cu: op tests, configurations against cuBLASLt, VL encode with and
# without; bench_matmul with gemm_mc's phase trace), prof (GPU time per op, gemm_mc off and on),
# mk (the expert's layers as one persistent kernel: op tests, policy suites, action cycle on/off,
# its trace), mkpi0 (the pi0 check with it) (default: tests model).
set -u
cd "$(dirname "$0")/.."
C=$PWD/.devcarry
O=${OUT:-/tmp/rtvla-gpu}; mkdir -p "$O"
for f in "$C"/lib/*.xz "$C"/bin/*.xz; do [ -e "$f" ] && python3 -c "import lzma,sys; open(sys.argv[2],'wb').write(lzma.open(sys.argv[1]).read())" "$f" "${f%.xz}"; done
chmod +x "$C"/bin/* 2>/dev/null
CUDALIB=$(python3 -c "import os,nvidia.cublas as c; print(os.path.join(list(c.__path__)[0],'lib'))" 2>/dev/null || true)
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:${CUDALIB}:${LD_LIBRARY_PATH:-}
R=$C/bin/rtvla
STEPS=${STEPS:-tests model}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit --format=csv | tee "$O/gpu.txt"
ldd "$R" | grep -E "not found" && { echo "missing libraries"; exit 1; }
PI0="--set model.preset=pi0 --set model.backend=cuda --set model.checkpoint=random"
for s in $STEPS; do case $s in
tests)
  for t in "test_cuda_ops" "test_gpu_mailbox cuda" "test_cuda_policy"; do
    timeout 300 $C/bin/$t > "$O/${t%% *}.log" 2>&1; echo "== $t rc=$?"; grep -E "passed|tiny|graphs|backend|FAIL|fail" "$O/${t%% *}.log" | tail -8
  done
  # the other paths: split K through global memory (no clusters), no programmatic launches,
  # cuBLAS attention, GELU as a pass, the few-row GEMM in the whole policy, the expert's norms
  # before their GEMMs, the fused layer-tail kernel in the whole policy (opt-in; the op test
  # turns it on itself)
  RTV_SKINNY_CLUSTER=0 timeout 300 $C/bin/test_cuda_ops 2>&1 | tail -1 | sed 's/^/RTV_SKINNY_CLUSTER=0 /'
  RTV_SKINNY_TMA=0 timeout 300 $C/bin/test_cuda_ops 2>&1 | tail -1 | sed 's/^/RTV_SKINNY_TMA=0 /'
  RTV_SKINNY_KW=1 timeout 300 $C/bin/test_cuda_ops 2>&1 | tail -1 | sed 's/^/RTV_SKINNY_KW=1 /'
  RTV_PDL=0 timeout 300 $C/bin/test_cuda_ops 2>&1 | tail -1 | sed 's/^/RTV_PDL=0 /'
  RTV_FUSED_ATTN=0 timeout 300 $C/bin/test_cuda_ops 2>&1 | tail -1 | sed 's/^/RTV_FUSED_ATTN=0 /'
  RTV_FUSED_ATTN=0 timeout 300 $C/bin/test_cuda_policy 2>&1 | tail -1 | sed 's/^/RTV_FUSED_ATTN=0 /'
  RTV_LT_GELU=0 timeout 300 $C/bin/test_cuda_ops 2>&1 | tail -1 | sed 's/^/RTV_LT_GELU=0 /'
  RTV_SKINNY=1 timeout 300 $C/bin/test_cuda_policy 2>&1 | tail -1 | sed 's/^/RTV_SKINNY=1 /'
  RTV_NORM_FOLD=0 timeout 300 $C/bin/test_cuda_policy 2>&1 | tail -1 | sed 's/^/RTV_NORM_FOLD=0 /'
  # SigLIP's one-kernel attention with 64 rows per CTA (attn_small.cu, opt-in)
  RTV_ATTN_RB=4 timeout 300 $C/bin/test_cuda_ops 2>&1 | tail -1 | sed 's/^/RTV_ATTN_RB=4 /'
  RTV_ATTN_RB=4 timeout 300 $C/bin/test_cuda_policy 2>&1 | tail -1 | sed 's/^/RTV_ATTN_RB=4 /'
  # the prefix's gate/up GEMM and rms_geglu as two launches (gemm_geglu.cu off)
  RTV_WG_GEGLU=0 timeout 300 $C/bin/test_cuda_policy 2>&1 | tail -1 | sed 's/^/RTV_WG_GEGLU=0 /'
  RTV_FUSED_MLP=1 timeout 300 $C/bin/test_cuda_policy 2>&1 | tail -1 | sed 's/^/RTV_FUSED_MLP=1 /'
  # the wgmma few-row GEMMs (wgemm.cu, opt-in): every M <= 64 matmul and rms_mlp through them
  RTV_WGMMA=1 timeout 300 $C/bin/test_cuda_ops 2>&1 | tail -1 | sed 's/^/RTV_WGMMA=1 /'
  RTV_WGMMA=1 timeout 300 $C/bin/test_cuda_policy 2>&1 | tail -1 | sed 's/^/RTV_WGMMA=1 /'
  # its K-split partials pulled after a cluster barrier instead of pushed (st.async)
  RTV_WGMMA=1 RTV_WGMMA_PUSH=0 timeout 300 $C/bin/test_cuda_ops 2>&1 | tail -1 | sed 's/^/RTV_WGMMA=1 RTV_WGMMA_PUSH=0 /'
  # the wgmma attention (attn_wg.cu; on by default for n_q <= 64 on sm_90): every head_dim
  # 128/256 attention through it, and none (the cuBLAS path)
  RTV_WG_ATTN=2 timeout 300 $C/bin/test_cuda_ops 2>&1 | tail -1 | sed 's/^/RTV_WG_ATTN=2 /'
  RTV_WG_ATTN=0 timeout 300 $C/bin/test_cuda_ops 2>&1 | tail -1 | sed 's/^/RTV_WG_ATTN=0 /'
  RTV_WG_ATTN=0 timeout 300 $C/bin/test_cuda_policy 2>&1 | tail -1 | sed 's/^/RTV_WG_ATTN=0 /'
  # its splits' rows pulled over DSMEM instead of pushed by bulk copies
  RTV_WG_ATTN=2 RTV_WG_ATTN_PUSH=0 timeout 300 $C/bin/test_cuda_ops 2>&1 | tail -1 | sed 's/^/RTV_WG_ATTN=2 RTV_WG_ATTN_PUSH=0 /'
  RTV_WG_ATTN_PUSH=0 timeout 300 $C/bin/test_cuda_policy 2>&1 | tail -1 | sed 's/^/RTV_WG_ATTN_PUSH=0 /'
  # the one-pass kernels launched plainly, and graphs with their programmatic edges as captured
  RTV_PDL_SMALL=0 timeout 300 $C/bin/test_cuda_policy 2>&1 | tail -1 | sed 's/^/RTV_PDL_SMALL=0 /'
  RTV_PDL_EDGE=0 timeout 300 $C/bin/test_cuda_policy 2>&1 | tail -1 | sed 's/^/RTV_PDL_EDGE=0 /'
  # the comparison switches: RoPE per head for every row count, the flow head's last prefix
  # layer run whole
  RTV_ROPE_HEADS=0 timeout 300 $C/bin/test_cuda_ops 2>&1 | tail -1 | sed 's/^/RTV_ROPE_HEADS=0 /'
  RTV_PREFIX_FULL=1 timeout 300 $C/bin/test_cuda_policy 2>&1 | tail -1 | sed 's/^/RTV_PREFIX_FULL=1 /' ;;
model)
  timeout 200 $R bench model -c configs/sim.yaml $PI0 --views 2 --prompt-len 0 --chunk 63 --iters 100 --json "$O/model_full63.json" 2>&1 | tee "$O/model_full63.txt" | tail -14
  timeout 200 $R bench model -c configs/sim.yaml $PI0 --views 2 --prompt-len 0 --iters 100 --json "$O/model_flow50.json" 2>&1 | tee "$O/model_flow50.txt" | tail -11
  timeout 200 $R bench model -c configs/sim.yaml $PI0 --views 2 --prompt-len 0 --head regression --iters 100 --json "$O/model_reg.json" 2>&1 | tee "$O/model_reg.txt" | tail -11 ;;
flow)
  # the action cycle alone (chunk 50), under whatever RTV_* knobs the caller set (TAG names it)
  timeout 200 $R bench model -c configs/sim.yaml $PI0 --views 2 --prompt-len 0 --iters 100 2>&1 | tee "$O/flow${TAG:-}.txt" | grep -E "^(head|action_cycle|full_forward) " ;;
split)
  timeout 300 $R bench split -c configs/sim.yaml $PI0 --csv "$O/split.csv" --json "$O/split.json" 2>&1 | tee "$O/split.txt" | tail -14 ;;
mps)
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
  nvidia-cuda-mps-control -d && sleep 1; ls -la $CUDA_MPS_PIPE_DIRECTORY | head -5
  timeout 300 $R bench split -c configs/sim.yaml $PI0 --csv "$O/split_mps.csv" 2>&1 | tee "$O/split_mps.txt" | tail -12
  echo quit | nvidia-cuda-mps-control; sleep 1
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY ;;
views)
  for v in 1 3 5; do echo "== views $v"; timeout 200 $R bench model -c configs/sim.yaml $PI0 --views $v --prompt-len 20 --iters 50 2>&1 | tail -3; done
  echo "== history 4 (sensor encoding of 4 past frames)"; timeout 200 $R bench model -c configs/sim.yaml $PI0 --set model.history=4 --views 2 --prompt-len 0 --iters 50 2>&1 | tail -5 ;;
run)
  timeout 300 $R run -c configs/sim.yaml $PI0 --set gpu.split.mode=${SPLIT:-green} --set gpu.split.action_sms=${ACT_SMS:-32} --set log.dir="$O/runs" --set log.status_line=false --task "pick up the red cube" --duration ${DUR:-60} ${EXTRA:-} 2>&1 | tee "$O/run${TAG:-}.txt" | tail -${TAIL:-40} ;;
mm)
  timeout 300 $C/bin/bench_matmul 2>&1 | tee "$O/bench_matmul.txt" | tail -${TAIL:-60} ;;
sk)
  # a hang (a copy that never lands) shows here in seconds rather than in the test suite
  RTV_SKINNY_TRACE=1 timeout 30 $C/bin/bench_matmul 3 qkv "skinny auto" > "$O/sk_guard.txt" 2>&1
  rc=$?; echo "== sk guard rc=$rc"; tail -3 "$O/sk_guard.txt"
  if [ $rc -ne 0 ]; then echo "== sk: guard failed, per-shape runs skipped"; else
  for v in ${SK_VARIANTS:-RTV_SKINNY_TMA=1 RTV_SKINNY_KW=1 RTV_SKINNY_TMA=0 RTV_SKINNY_EVICT=0}; do
    for sh in qkv o+res gate_up+geglu down+res act_out; do
      echo "== $v $sh"
      env $v RTV_SKINNY_TRACE=1 timeout 60 $C/bin/bench_matmul 20 "$sh" 2>&1 | grep -E "cublasLt|sk bn|skinny auto|trace" | \
        { [ "$v" = RTV_SKINNY_TMA=1 ] && cat || grep -A1 "skinny auto"; }
    done
  done 2>&1 | tee "$O/sk.txt"; fi ;;
wg)
  # the wgmma few-row GEMM per expert shape against cuBLASLt, with its per-CTA phase trace and
  # the chain trace of the timed graph (how consecutive launches overlapped)
  # (WG_VARIANTS: environment settings, one word each)
  for v in ${WG_VARIANTS:-RTV_PDL=1 RTV_WGMMA_EARLY=0 RTV_WGMMA_KS=4}; do
    for sh in qkv o+res gate_up+geglu down+res act_out; do
      echo "== $v $sh"; env $v RTV_WGMMA_TRACE=1 timeout 40 $C/bin/bench_matmul 15 "$sh" wgmma 2>&1 | grep -E "cublasLt|wgmma|trace|->"
    done
  done 2>&1 | tee "$O/wg.txt" ;;
wgchain)
  # the wgmma path in a chain: a guard run (a hang in the K-split exchange shows here in
  # seconds), then the chain trace of bench_matmul's graphs and of the action cycle under each
  # of WGC_VARIANTS (words, VAR=VAL joined by commas; DEFAULT=1 names the default settings)
  RTV_WGMMA_TRACE=1 timeout 30 $C/bin/bench_matmul 3 o+res wgmma > "$O/wgchain_guard.txt" 2>&1
  rc=$?; echo "== wgchain guard rc=$rc"; tail -2 "$O/wgchain_guard.txt"
  if [ $rc -eq 0 ]; then
  for v in ${WGC_VARIANTS:-DEFAULT=1 RTV_WGMMA_PF=0 RTV_WGMMA_PUSH=0}; do
    for sh in qkv o+res gate_up+geglu down+res; do
      echo "== $v $sh"; env ${v//,/ } RTV_WGMMA_TRACE=1 timeout 40 $C/bin/bench_matmul 9 "$sh" wgmma 2>&1 | grep -E "^(qkv|o\+res|gate|down)|->"
    done
    echo "== $v action cycle"; env ${v//,/ } RTV_WGMMA=1 RTV_WGMMA_TRACE=1 timeout 120 $R bench model -c configs/sim.yaml $PI0 --views 2 --prompt-len 0 --iters 30 2>&1 | grep -E "^action_cycle|->|whole"
  done 2>&1 | tee "$O/wgchain.txt"; fi ;;
wa)
  # the wgmma attention's phase trace (clock64 per CTA, the last launch of the action cycle's
  # graph) and the action cycle under each of WA_VARIANTS (words, VAR=VAL joined by commas);
  # then the split benchmark at two shares with it in the action thread's green context and
  # without (RTV_WG_ATTN_SPLIT=0)
  for v in ${WA_VARIANTS:-RTV_WG_ATTN_PUSH=1 RTV_WG_ATTN_PUSH=0}; do
    echo "== $v"; env ${v//,/ } RTV_WG_ATTN_TRACE=1 timeout 120 $R bench model -c configs/sim.yaml $PI0 --views 2 --prompt-len 0 --iters 30 2>&1 | grep -A12 -E "^wgmma attention|^action_cycle "
  done 2>&1 | tee "$O/wa.txt"
  for v in 1 0; do echo "== RTV_WG_ATTN_SPLIT=$v"; RTV_WG_ATTN_SPLIT=$v timeout 100 $R bench split -c configs/sim.yaml $PI0 --modes green:32,green:64 --samples 50 --vl-seconds 2 2>&1 | tail -5; done | tee "$O/wa_split.txt" ;;
ab)
  # the same bench under each setting, first and last the same one so that drift shows; a
  # path becomes the default only where it wins here (AB_VARIANTS: words, each VAR=VALUE or
  # several joined by commas). AB_REPEAT=N runs the whole list N times, alternating, and
  # scripts/ab_summary.py prints each variant's p50s and their median (within one lease the
  # VL encode's p50 drifts by ~0.1-0.2 ms, as much as most single changes move it)
  for rep in $(seq 1 ${AB_REPEAT:-1}); do
  for v in ${AB_VARIANTS:-"RTV_NORM_FOLD=1" "RTV_NORM_FOLD=0" "RTV_NORM_FOLD=1"}; do
    echo "== $v ($(date +%T))"; env ${v//,/ } timeout 200 $R bench model -c configs/sim.yaml $PI0 --views 2 --prompt-len 0 --iters 100 2>&1 | grep -E "^(prefix_llm|vl_encode|action_cycle) "
  done; done 2>&1 | tee "$O/ab.txt"
  python3 scripts/ab_summary.py "$O/ab.txt" ;;
pi0test)
  RTV_TEST_PI0=only timeout 500 $C/bin/test_cuda_policy 2>&1 | tee "$O/pi0test.txt" | tail -5 ;;
gg)
  # a hang (a ring stage whose bytes never land) shows here in seconds
  timeout 40 $C/bin/test_cuda_ops > "$O/gg_ops.txt" 2>&1; rc=$?
  echo "== gg: test_cuda_ops rc=$rc: $(tail -1 "$O/gg_ops.txt")"; grep -A2 FAIL "$O/gg_ops.txt" | head -20
  if [ $rc -eq 0 ]; then
    RTV_CUDA_STAGING_MB=1024 RTV_WG_GEGLU=1 timeout 30 $C/bin/bench_matmul 15 p.gate_up+rmsgeglu wgmma 2>&1 | grep -v "^graph"
    for rep in 1 2; do for v in RTV_WG_GEGLU=1 RTV_WG_GEGLU=0; do
      echo "== $v"; env $v timeout 60 $R bench model -c configs/sim.yaml $PI0 --views 2 --prompt-len 0 --iters 100 2>&1 | grep -E "^(prefix_llm|vl_encode|action_cycle) "
    done; done 2>&1 | tee "$O/gg_ab.txt"
    RTV_WG_GEGLU=1 timeout 100 $C/bin/test_cuda_policy 2>&1 | tail -1
    RTV_WG_GEGLU=1 RTV_TEST_PI0=only timeout 200 $C/bin/test_cuda_policy 2>&1 | tail -3
  fi ;;
ncu)
  # Nsight Compute on the first launch of each of the VL encode's kernels in question (SigLIP's
  # attention, the prefix's gate/up + GeGLU, rms_rope) and the action side's attention: time,
  # throughput, occupancy, warp stall reasons. Real clocks (--clock-control none); ncu runs a
  # kernel alone with L2 flushed, so its times are a cold-cache bound, not the graph's.
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | tail -1)
  # (attn_small_k/4: the same with RTV_ATTN_RB=4, 64 rows per CTA)
  for t in attn_small_k attn_small_k/4 gg_k rms_rope attn_wg_k; do
    k=${t%/*} rb=2; [ "$t" != "$k" ] && rb=${t#*/}
    RTV_ATTN_RB=$rb timeout 150 $NCU --clock-control none -k regex:$k -c 1 --section SpeedOfLight \
      --section Occupancy --section WarpStateStats --section LaunchStats --section \
      MemoryWorkloadAnalysis $R bench model -c configs/sim.yaml $PI0 --views 2 --prompt-len 0 \
      --iters 1 --warmup 0 > "$O/ncu_${t/\//_rb}.txt" 2>&1
    echo "== ncu $t rc=$?"
    grep -E "^  [A-Za-z_].*\(|Duration|Throughput|Achieved Occupancy|Registers Per|Block Size|Grid Size|Shared Memory Config|Warp Cycles Per Issued|L2 Hit|Stall" \
      "$O/ncu_${t/\//_rb}.txt" | head -24
  done ;;
gm)
  # gemm_mc.cu (matmul for M > 64 on wgmma, opt-in RTV_GM=1): its op tests (they turn it on
  # themselves), every configuration on the VL encode's GEMM shapes against cuBLASLt, the
  # policy suites and the VL encode with it on and off
  timeout 90 $C/bin/test_cuda_ops > "$O/gm_ops.txt" 2>&1
  echo "== gm: test_cuda_ops rc=$?: $(tail -1 "$O/gm_ops.txt")"; grep -A8 FAIL "$O/gm_ops.txt" | head -30
  for sh in v.qkv v.o+res "v.fc1 gelu" v.fc2+res p.qkv p.o+res p.down+res; do
    RTV_GM_TRACE=1 timeout 40 $C/bin/bench_matmul 15 "$sh" 2>&1 | grep -v "^graph\|^shape\|does not fit"
  done | tee "$O/gm_mm.txt"
  python3 scripts/gm_fit.py "$O/gm_mm.txt" 2>&1 | head -1 # the planner's model refitted
  RTV_GM=1 timeout 100 $C/bin/test_cuda_policy 2>&1 | tail -1 | sed 's/^/RTV_GM=1 /'
  for rep in 1 2; do for v in RTV_GM=0 RTV_GM=1; do
    echo "== $v"; env $v timeout 60 $R bench model -c configs/sim.yaml $PI0 --views 2 --prompt-len 0 --iters 120 2>&1 | grep -E "^(vision_tower|prefix_llm|vl_encode|action_cycle) |error|non-finite"
  done; done 2>&1 | tee "$O/gm_ab.txt" ;;
prof)
  # GPU time per op of the VL encode and the action cycle (RTV_CUDA_PROF=1: eager launches with
  # CUDA events around each op; the rows "<= 64" are the action side), with gemm_mc off and on,
  # and with the expert's layers as one kernel per step (the row "expert_layers")
  for v in RTV_GM=0 RTV_GM=1 RTV_MK=1; do
    echo "== prof $v"; f="$O/prof_$(echo "$v" | tr '=' '_').txt"
    env $v RTV_CUDA_PROF=1 timeout 80 $R bench model -c configs/sim.yaml $PI0 --views 2 \
      --prompt-len 0 --iters 20 > "$f" 2>&1
    tail -27 "$f"
  done ;;
mk)
  # expert_layers on mk.cu (opt-in RTV_MK=1; test_cuda_ops turns it on itself): a wait that
  # cannot end traps after ~2 s, a hang shows as the timeout
  timeout 120 $C/bin/test_cuda_ops > "$O/mk_ops.txt" 2>&1; rc=$?
  echo "== mk: test_cuda_ops rc=$rc: $(tail -1 "$O/mk_ops.txt")"
  grep -E -A4 "FAIL|expert_layers|error" "$O/mk_ops.txt" | head -40
  if [ $rc -eq 0 ]; then
    RTV_MK=1 timeout 100 $C/bin/test_cuda_policy 2>&1 | tail -1 | sed 's/^/RTV_MK=1 /'
    for rep in 1 2; do for v in RTV_MK=0 RTV_MK=1; do
      echo "== $v"; env $v timeout 60 $R bench model -c configs/sim.yaml $PI0 --views 2 --prompt-len 0 --iters 120 2>&1 | grep -E "^(head|action_cycle|full_forward) |error|non-finite"
    done; done 2>&1 | tee "$O/mk_ab.txt"
    for ak in 1 4; do # attention splits of 1 / 4 chunks (default 2): more or less to combine
      echo "== RTV_MK=1 RTV_MK_AKEYS=$ak"; RTV_MK=1 RTV_MK_AKEYS=$ak timeout 60 $R bench model -c configs/sim.yaml $PI0 --views 2 --prompt-len 0 --iters 120 2>&1 | grep -E "^action_cycle |error"
    done 2>&1 | tee -a "$O/mk_ab.txt"
    # where a launch's time goes: per op, and each op's span in the first layers (the trace of
    # the last replay, printed when the stream is freed)
    RTV_MK=1 RTV_MK_TRACE=1 timeout 60 $R bench model -c configs/sim.yaml $PI0 --views 2 --prompt-len 0 --iters 20 2>&1 | grep -A12 "^expert kernel" | tee "$O/mk_trace.txt"
  fi ;;
mkpi0)
  # the pi0 check (all 18 layers, 10 steps, against the CPU: minutes of CPU time) with it on
  RTV_MK=1 RTV_TEST_PI0=only timeout 500 $C/bin/test_cuda_policy 2>&1 | tee "$O/mkpi0.txt" | tail -5 ;;
ncumm)
  # Nsight Compute on the VL encode's first cuBLAS GEMMs (the patch embedding, then SigLIP
  # layer 0's qkv, o, fc1, fc2): grid, cluster, registers, and whether L2 or DRAM or the
  # tensor pipes bound them (real clocks, one launch each, cold L2)
  NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | tail -1)
  timeout 200 $NCU --clock-control none -k regex:'gemm|nvjet|xmma|sm90' -c 6 --section \
    SpeedOfLight --section LaunchStats --section MemoryWorkloadAnalysis --section Occupancy \
    $R bench model -c configs/sim.yaml $PI0 --views 2 --prompt-len 0 --iters 1 --warmup 0 \
    > "$O/ncu_mm.txt" 2>&1
  echo "== ncu mm rc=$?"
  grep -E "^  [A-Za-z_].*\(|Duration|Throughput|Cluster Size|Registers Per|Block Size|Grid Size|L2 Hit|Mem Busy|Max Bandwidth|Dynamic Shared" \
    "$O/ncu_mm.txt" | head -120 ;;
esac; done
