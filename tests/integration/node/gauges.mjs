// A Node SDK worker with telemetry on: the SDK reports its own iii.worker.* gauges (MTRC
// frames) once connected; the test reads them back through engine::workers::info.
import { registerWorker } from 'iii-sdk'

registerWorker(process.env.III_URL, {
  workerName: 'node-gauges',
  otel: { enabled: true, metricsExportIntervalMs: 300 },
})
console.log(JSON.stringify({ started: true }))
setInterval(() => {}, 1000)
