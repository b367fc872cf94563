// `ddactor serve` and `ddactor serve-expert`: DDM inference as a service; see commands.hpp.
//
//   HTTP client --POST /v1/generate (JSON)--> http_server loop --> one requester actor per
//     request --(generate)--> generator actor (a client that hangs up ends its requester, and
//     the generator drops the request)
//   CAF client  --------(generate, generate_request)------------------------> generator actor
//   generator --(velocity)--> expert_server actors of `serve-expert` peers (or local experts)
#include "app/commands.hpp"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "actors/expert_server.hpp"
#include "actors/generator.hpp"
#include "app/ddm_models.hpp"
#include "app/inference_model.hpp"
#include "app/stop_signal.hpp"
#include "models/device_transfer.hpp"
#include "models/model_config.hpp"
#include "caf/io/all.hpp"
#include "monitoring/metrics_http_server.hpp"
#include "runtime/actor_system_setup.hpp"
#include "runtime/run_data.hpp"
#include "runtime/actor_system_shutdown.hpp"
#include "runtime/http_server.hpp"
#include "runtime/tls_server_context.hpp"
#include "runtime/message_types.hpp"
#include "runtime/secure/bearer_token.hpp"

namespace ddactor {

namespace {

std::chrono::milliseconds seconds(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
}

network_timing timing_of(const run_config& config) {
  network_timing timing;
  timing.heartbeat_interval = seconds(config.network.heartbeat_interval);
  timing.connection_timeout = seconds(config.network.connection_timeout);
  return timing;
}

// Publishes an actor on serve.listen (when set); returns the bound port or 0.
template <class Handle>
uint16_t publish(caf::actor_system& system, const Handle& actor, const run_config& config) {
  if (config.serve.listen.empty())
    return 0;
  auto address = parse_listen_address(config.serve.listen);
  auto port = system.middleman().publish(actor, address.port, address.host.c_str(), true);
  if (!port)
    throw std::runtime_error("cannot listen on " + config.serve.listen + ": " +
                             system.render(port.error()));
  return *port;
}

// A JSON body -> generate_request; throws std::invalid_argument on a malformed body.
generate_request parse_generate_body(const std::string& body, const run_config& config) {
  generate_request r;
  r.steps = config.sample.steps;
  r.sampler = config.sample.sampler;
  r.cfg_scale = config.sample.cfg_scale;
  r.strategy = config.ddm.strategy;
  r.top_k = config.ddm.top_k;
  r.seed = config.sample.seed;
  auto json = nlohmann::json::parse(body);
  if (!json.is_object())
    throw std::invalid_argument("the body must be a JSON object");
  for (const auto& [key, value] : json.items()) {
    if (key == "class") {
      if (!value.is_number_integer() || value.get<int64_t>() < 0)
        throw std::invalid_argument("class must be a whole number >= 0 (leave it out for a row "
                                    "per class)");
      r.class_index = value.get<int64_t>();
    }
    else if (key == "prompt")
      r.prompt = value.get<std::string>();
    else if (key == "count")
      r.count = value.get<int32_t>();
    else if (key == "steps")
      r.steps = value.get<int32_t>();
    else if (key == "sampler")
      r.sampler = value.get<std::string>();
    else if (key == "cfg")
      r.cfg_scale = value.get<double>();
    else if (key == "strategy")
      r.strategy = value.get<std::string>();
    else if (key == "top_k")
      r.top_k = value.get<int32_t>();
    else if (key == "seed")
      r.seed = value.get<uint64_t>();
    else
      throw std::invalid_argument("unknown field '" + key +
                                  "' (class, prompt, count, steps, sampler, cfg, strategy, "
                                  "top_k, seed)");
  }
  return r;
}

// POST /v1/generate: refuses a malformed request at once (400); otherwise a requester actor
// asks the generator and answers: 200 with the PNG, 400, 429 when the generator is at capacity,
// 503 when an expert it needs is gone. Each request is logged with its status, images and time.
void serve_generate(caf::actor_system& system, const generator_actor& generator,
                    const http_request& req, const http_reply& reply, const run_config& config,
                    const dit_options& shape, std::chrono::milliseconds timeout) {
  const auto started = std::chrono::steady_clock::now();
  const auto client = req.client;
  const auto finish = [reply, client, started](http_response response, int64_t images) {
    const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    spdlog::info("POST /v1/generate from {}: {} ({} images, {:.2f} s)", client, response.status,
                 response.status == 200 ? images : 0, secs);
    reply.send(std::move(response));
  };
  generate_request request;
  try {
    request = parse_generate_body(req.body, config);
  } catch (const std::exception& e) {
    finish(http_error(400, e.what()), 0);
    return;
  }
  if (auto problem = validate_generate_request(request, shape, config.serve.max_count)) {
    finish(http_error(400, *problem), 0);
    return;
  }
  const auto images = requested_images(request, shape);
  auto requester = system.spawn([=](caf::event_based_actor* self) -> caf::behavior {
    self->request(generator, timeout, generate_atom_v, request)
      .then(
        [=](const std::vector<char>& png) {
          http_response response;
          response.content_type = "image/png";
          response.body.assign(png.begin(), png.end());
          finish(std::move(response), images);
          self->quit();
        },
        [=](const caf::error& err) {
          const int status = err == errc::invalid_message ? 400
                             : err == errc::overloaded   ? 429
                                                          : 503;
          auto response = http_error(status, self->system().render(err));
          if (status == 429)
            response.headers.emplace_back("Retry-After", "5");
          finish(std::move(response), images);
          self->quit();
        });
    return {[](caf::ok_atom) {}};
  });
  reply.on_cancel([requester] {
    caf::anon_send_exit(requester, caf::exit_reason::user_shutdown);
  });
}

// With a token, POST /v1/generate answers 401 to a request that does not present it; refusals
// are logged (the first few, then every 100th) with the client's address.
bool authorized(const std::optional<bearer_token>& token, const http_request& req,
                const http_reply& reply) {
  if (!token)
    return true;
  auto header = req.headers.find("authorization");
  if (header != req.headers.end() && token->admits(header->second))
    return true;
  static std::atomic<uint64_t> refused{0};
  const auto count = ++refused;
  if (count <= 5 || count % 100 == 0)
    spdlog::warn("POST /v1/generate from {}: 401, {} bearer token ({} refused so far)",
                 req.client, header == req.headers.end() ? "no" : "a wrong", count);
  auto response = http_error(401, "this server asks for a bearer token (Authorization: Bearer "
                                  "<token>)");
  response.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"ddactor\"");
  reply.send(std::move(response));
  return false;
}

bool loopback_host(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" ||
         host.rfind("127.", 0) == 0;
}

} // namespace

int serve_command(const run_config& config) {
  install_stop_handler();
  ddactor_system_config system_config(timing_of(config), /*with_network=*/true);
  caf::actor_system system{system_config};
  // Declared after the system, so it ends first: a bounded wait for the detached actors.
  detached_actor_guard guard{system, std::chrono::seconds(30), shutdown_failure_exit_code};

  generator_options options;
  options.routing = load_router(config);
  auto k = options.routing->options().num_experts;
  for (int64_t e = 0; e < k; ++e) {
    expert_endpoint endpoint;
    auto where = e < static_cast<int64_t>(config.serve.experts.size())
                   ? config.serve.experts[static_cast<size_t>(e)]
                   : std::string();
    if (where.empty()) {
      endpoint.local = load_expert(config, static_cast<int>(e));
      endpoint.address = "local";
    } else {
      auto address = parse_listen_address(where);
      auto remote = system.middleman().remote_actor<expert_remote>(address.host, address.port);
      if (!remote)
        throw std::runtime_error("cannot reach expert " + std::to_string(e) + " at " + where +
                                 ": " + system.render(remote.error()));
      endpoint.remote = *remote;
      endpoint.address = where;
      spdlog::info("expert {}: remote, at {}", e, where);
    }
    options.experts.push_back(std::move(endpoint));
  }
  // The shape every expert shares: from a local expert, or from the config.
  options.shape = make_dit_options(config);
  for (const auto& e : options.experts)
    if (e.local)
      options.shape = e.local->options();
  options.class_names = class_label_names(config, options.shape.num_classes);
  options.fall_back = config.serve.fall_back;
  options.expert_timeout = seconds(config.serve.expert_timeout);
  options.max_count = config.serve.max_count;
  options.max_queue = static_cast<size_t>(config.serve.max_queue);
  // The router, the local experts and the sampling on the run's (first) device.
  options.device = parse_training_device(config.run.device_of_rank(0));
  options.routing->to(options.device);
  for (auto& e : options.experts)
    if (e.local)
      e.local->to(options.device);
  auto generator = spawn_generator(system, options);
  if (auto port = publish(system, router_remote{generator}, config))
    spdlog::info("router serving over CAF on port {}", port);

  std::unique_ptr<http_server> http;
  if (!config.serve.http.empty()) {
    const auto token = bearer_token::load(config.serve.token_file,
                                          std::getenv("DDACTOR_SERVE_TOKEN"));
    http_server_options http_options;
    http_options.tls = endpoint_tls(config.serve.tls_certificate_file, config.serve.tls_key_file);
    http = std::make_unique<http_server>(http_options);
    const auto timeout = seconds(config.serve.request_timeout);
    http->handle("POST", "/v1/generate", [&system, &config, generator, timeout, token,
                                          shape = options.shape](const http_request& req,
                                                                  const http_reply& reply) {
      if (authorized(token, req, reply))
        serve_generate(system, generator, req, reply, config, shape, timeout);
    });
    http->handle("GET", "/healthz", [status = options.status](const http_request&,
                                                               const http_reply& reply) {
      http_response response;
      response.content_type = "application/json";
      response.body = status->json();
      reply.send(std::move(response));
    });
    auto address = parse_listen_address(config.serve.http);
    const auto port = http->start(address.host, address.port);
    spdlog::info("HTTP API on {}://{}:{}/v1/generate (health: /healthz){}",
                 http_options.tls ? "https" : "http", address.host, port,
                 token ? "; clients present a bearer token" : "");
    if (token && !http_options.tls && !loopback_host(address.host))
      spdlog::warn("serve.http {} is reachable from other machines over plain HTTP: clients' "
                   "bearer tokens cross the network readable (set serve.tls_certificate_file "
                   "and serve.tls_key_file, or put a TLS proxy in front)",
                   config.serve.http);
    if (!token && !loopback_host(address.host))
      spdlog::warn("serve.http {} is reachable from other machines and asks no token: anyone "
                   "who reaches it can spend this machine's compute (set serve.token_file or "
                   "DDACTOR_SERVE_TOKEN)",
                   config.serve.http);
  }
  spdlog::info("serving a DDM of {} experts; Ctrl-C stops", k);
  wait_for_stop();
  spdlog::info("stopping");
  if (http)
    http->stop();
  caf::anon_send_exit(generator, caf::exit_reason::user_shutdown);
  return 0;
}

int serve_expert_command(const run_config& config, int expert,
                         const std::filesystem::path& checkpoint) {
  install_stop_handler();
  if (config.serve.listen.empty())
    throw std::invalid_argument("serve-expert needs serve.listen (where routers reach it)");
  auto loaded = load_inference_model(expert_config(config, expert), checkpoint, false);
  loaded.model->to(parse_training_device(config.run.device_of_rank(0)));
  ddactor_system_config system_config(timing_of(config), /*with_network=*/true);
  caf::actor_system system{system_config};
  // Declared after the system, so it ends first: a bounded wait for the detached actors.
  detached_actor_guard guard{system, std::chrono::seconds(30), shutdown_failure_exit_code};
  auto server = spawn_expert_server(system, {loaded.model, expert});
  auto port = publish(system, server, config);
  spdlog::info("expert {} ({}, step {}) serving on {}:{}; Ctrl-C stops", expert,
               loaded.checkpoint.string(), loaded.step,
               parse_listen_address(config.serve.listen).host, port);
  wait_for_stop();
  caf::anon_send_exit(server, caf::exit_reason::user_shutdown);
  return 0;
}

} // namespace ddactor
