/** Small labels on module cards and details: source, facets, invalid metadata, no trained weights, checks. */
import * as React from 'react';

import { Catalog, Checks, checkReportURL } from './api';
import { describeBadge } from './checksState';
import { FACET_LABELS, SOURCE_LABELS } from './marketplaceState';

export function SourceBadge(props: { source: Catalog.Source }): JSX.Element {
  const { label, title } = SOURCE_LABELS[props.source] ?? { label: props.source, title: '' };
  return (
    <span className="jp-ReefLab-badge jp-ReefLab-badge-source" title={title}>
      {label}
    </span>
  );
}

export function InvalidBadge(): JSX.Element {
  return (
    <span
      className="jp-ReefLab-badge jp-ReefLab-badge-invalid"
      title="Its description does not follow the ai4-metadata standard; open it to see what is wrong"
    >
      invalid metadata
    </span>
  );
}

/** A module without trained weights (a network built from a yaml): to be trained before it finds anything. */
export function UntrainedBadge(): JSX.Element {
  return (
    <span className="jp-ReefLab-badge jp-ReefLab-badge-untrained" title="No trained weights: train it first">
      not trained
    </span>
  );
}

/**
 * Whether it passed the platform's checks: "checked", "check failed" (which checks in its tooltip) or "not
 * checked". With `link`, a badge with a report opens it in a new tab (not on a card: a card is a button).
 */
export function CheckBadge(props: { badge: Checks.IBadge; link?: boolean }): JSX.Element {
  const { badge } = props;
  const { label, title } = describeBadge(badge);
  const className = `jp-ReefLab-badge jp-ReefLab-badge-check jp-mod-check-${badge.state}`;
  if (props.link && badge.report && badge.state !== 'unchecked') {
    return (
      <a
        className={className}
        href={checkReportURL(badge.report)}
        target="_blank"
        rel="noopener noreferrer"
        title={`${title}. Open the report.`}
      >
        {label}
      </a>
    );
  }
  return (
    <span className={className} title={title}>
      {label}
    </span>
  );
}

/** Tasks and data types of a module, each as a badge with the facet in its tooltip. */
export function FacetBadges(props: { card: Catalog.ICard; facets?: Catalog.Facet[] }): JSX.Element | null {
  const facets = props.facets ?? ['tasks', 'data-type'];
  const badges = facets.flatMap(facet =>
    (props.card[facet] ?? []).map(value => (
      <span
        key={`${facet}:${value}`}
        className={`jp-ReefLab-badge jp-ReefLab-badge-${facet}`}
        title={FACET_LABELS[facet]}
      >
        {value}
      </span>
    ))
  );
  return badges.length ? <>{badges}</> : null;
}
