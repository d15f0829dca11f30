"""Sample /metrics text of each supported model server (shapes as those servers expose them)."""

VLLM = """# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{finished_reason="stop",model_name="llama"} 90.0
vllm:request_success_total{finished_reason="length",model_name="llama"} 10.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="llama"} 4.0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="llama"} 12.0
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{model_name="llama"} 5000.0
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{model_name="llama"} 20000.0
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="1.0",model_name="llama"} 60.0
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="llama"} 100.0
vllm:e2e_request_latency_seconds_count{model_name="llama"} 100.0
vllm:e2e_request_latency_seconds_sum{model_name="llama"} 150.0
"""

TRITON = """# TYPE nv_inference_request_success counter
nv_inference_request_success{model="resnet",version="1"} 40
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="resnet",reason="REJECTED",version="1"} 2
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="resnet",version="1"} 3
"""

TGI = """# TYPE tgi_request_success counter
tgi_request_success 30
# TYPE tgi_request_failure counter
tgi_request_failure{err="validation"} 1
# TYPE tgi_queue_size gauge
tgi_queue_size 2
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 8
# TYPE tgi_request_duration histogram
tgi_request_duration_bucket{le="0.5"} 10
tgi_request_duration_bucket{le="+Inf"} 31
tgi_request_duration_sum 40.5
tgi_request_duration_count 31
# TYPE tgi_batch_next_size histogram
tgi_batch_next_size_bucket{le="4"} 5
tgi_batch_next_size_bucket{le="+Inf"} 9
tgi_batch_next_size_sum 50
tgi_batch_next_size_count 9
# TYPE tgi_request_input_length histogram
tgi_request_input_length_bucket{le="+Inf"} 31
tgi_request_input_length_sum 3100
tgi_request_input_length_count 31
# TYPE tgi_request_generated_tokens histogram
tgi_request_generated_tokens_bucket{le="+Inf"} 31
tgi_request_generated_tokens_sum 6200
tgi_request_generated_tokens_count 31
"""

TFSERVING = """# TYPE :tensorflow:serving:request_count counter
:tensorflow:serving:request_count{model_name="bert",status="OK"} 70
:tensorflow:serving:request_count{model_name="bert",status="INVALID_ARGUMENT"} 3
# TYPE :tensorflow:serving:request_latency histogram
:tensorflow:serving:request_latency_bucket{model_name="bert",API="predict",entrypoint="REST",le="10000"} 50
:tensorflow:serving:request_latency_bucket{model_name="bert",API="predict",entrypoint="REST",le="+Inf"} 73
:tensorflow:serving:request_latency_sum{model_name="bert",API="predict",entrypoint="REST"} 900000
:tensorflow:serving:request_latency_count{model_name="bert",API="predict",entrypoint="REST"} 73
"""

KSERVE = """# TYPE request_predict_seconds histogram
request_predict_seconds_bucket{model_name="iris",le="0.005"} 15
request_predict_seconds_bucket{model_name="iris",le="+Inf"} 20
request_predict_seconds_sum{model_name="iris"} 0.3
request_predict_seconds_count{model_name="iris"} 20
request_predict_seconds_created{model_name="iris"} 1.7e9
"""

PRESCALE = """# TYPE inference_requests_total counter
inference_requests_total{model="demo",code="200"} 11
# TYPE inference_queue_depth gauge
inference_queue_depth{model="demo"} 1
# TYPE inference_inflight_requests gauge
inference_inflight_requests{model="demo"} 2
# TYPE inference_request_duration_seconds histogram
inference_request_duration_seconds_bucket{model="demo",le="0.1"} 9
inference_request_duration_seconds_bucket{model="demo",le="+Inf"} 11
inference_request_duration_seconds_sum{model="demo"} 0.8
inference_request_duration_seconds_count{model="demo"} 11
"""

BY_PRESET = {"vllm": VLLM, "triton": TRITON, "tgi": TGI, "tfserving": TFSERVING, "kserve": KSERVE,
             "prescale": PRESCALE}
