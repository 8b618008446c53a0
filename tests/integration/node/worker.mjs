// A Node SDK worker for the smoke test: serves node::greet and calls a Python worker's
// function through the engine, printing one JSON line per outcome.
import { registerWorker } from 'iii-sdk'

const worker = registerWorker(process.env.III_URL, {
  workerName: 'node-smoke',
  otel: { enabled: false },
})
worker.registerFunction('node::greet', async (data) => ({ greeting: `hello ${data.name}` }))

const deadline = Date.now() + 20000
for (;;) {
  try {
    const doubled = await worker.trigger({ function_id: 'py::double', payload: { n: 21 } })
    console.log(JSON.stringify({ doubled }))
    break
  } catch (err) {
    if (Date.now() > deadline) {
      console.log(JSON.stringify({ error: String(err) }))
      break
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}
try {
  await worker.trigger({ function_id: 'py::nope', payload: {} })
} catch (err) {
  console.log(JSON.stringify({ missing: err.code ?? String(err) }))
}
setInterval(() => {}, 1000)
