/**
 * A serverless result as the Try view shows a module's answer: what it found drawn on the user's image, the
 * Try view's table of findings, and the answer as JSON. Other answers show as they are.
 */
import * as React from 'react';

import { Deployments } from './api';
import { formatPercent } from './deploymentsState';
import { Answer, summarizeAnswer } from './panelState';
import { asPrediction } from './serverlessForm';
import { Findings } from './tryView';
import { Zoomable } from './zoom';

/** An object URL for a blob while it is shown. */
function useObjectURL(blob: Blob | null): string | null {
  const [url, setUrl] = React.useState<string | null>(null);
  React.useEffect(() => {
    if (!blob) {
      setUrl(null);
      return;
    }
    const made = URL.createObjectURL(blob);
    setUrl(made);
    return () => URL.revokeObjectURL(made);
  }, [blob]);
  return url;
}

/** The image with the detector's boxes and labels over it (drawn in the image's own pixels, so they scale with it). */
function Annotated(props: { url: string; file: string; prediction: Deployments.IPrediction }): JSX.Element {
  const { width, height, detections = [] } = props.prediction;
  const font = Math.max(12, Math.round(width / 45));
  return (
    <figure className="jp-ReefLab-annotated">
      <Zoomable label={`${props.file}, as the module sees it`}>
        <div className="jp-ReefLab-overlay">
          <img src={props.url} alt={`${props.file} with what the module found drawn on it`} />
          <svg viewBox={`0 0 ${width} ${height}`} preserveAspectRatio="none" aria-hidden="true">
            {detections.map((d, i) => {
              const [x1, y1, x2, y2] = d.box;
              return (
                <g key={i} className="jp-ReefLab-box">
                  <rect x={x1} y={y1} width={Math.max(0, x2 - x1)} height={Math.max(0, y2 - y1)} />
                  <text x={x1 + 2} y={y1 > font + 2 ? y1 - 4 : y1 + font} fontSize={font}>
                    {d.label} {formatPercent(d.confidence)}
                  </text>
                </g>
              );
            })}
          </svg>
        </div>
      </Zoomable>
      <figcaption className="jp-ReefLab-muted">{props.file}, as the module sees it</figcaption>
    </figure>
  );
}

/** What a service answered for `file`: a prediction like Try's when it is one, the bytes' own form otherwise. */
export function ResultPreview(props: { answer: Answer; file: string; image?: Blob | null }): JSX.Element {
  const { answer, file } = props;
  const prediction = answer.kind === 'json' ? asPrediction(answer.value) : null;
  const url = useObjectURL(prediction ? (props.image ?? null) : null);
  const bytes = React.useMemo(
    () => (answer.kind === 'image' ? new Blob([answer.bytes], { type: answer.mime }) : null),
    [answer]
  );
  const answerImage = useObjectURL(bytes);
  if (answer.kind === 'image') {
    return (
      <figure className="jp-ReefLab-annotated">
        {answerImage && <img src={answerImage} alt={`The answer for ${file}`} />}
        <figcaption className="jp-ReefLab-muted">The answer for {file}</figcaption>
      </figure>
    );
  }
  if (prediction) {
    return (
      <div className="jp-ReefLab-answer" role="region" aria-label={`Answer for ${file}`}>
        {url && <Annotated url={url} file={file} prediction={prediction} />}
        <Findings prediction={prediction} />
        <details className="jp-ReefLab-json">
          <summary>Answer as JSON</summary>
          <pre tabIndex={0}>{answer.text}</pre>
        </details>
      </div>
    );
  }
  const summary = answer.kind === 'json' ? summarizeAnswer(answer.value) : null;
  return (
    <div className="jp-ReefLab-answer" role="region" aria-label={`Answer for ${file}`}>
      {summary && <p className="jp-ReefLab-summary">{summary}</p>}
      <div className="jp-ReefLab-json">
        <pre tabIndex={0}>{answer.text}</pre>
      </div>
    </div>
  );
}
