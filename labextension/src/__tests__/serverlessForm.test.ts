import { describe, expect, it } from 'vitest';

import { contentDisposition, Serverless } from '../api';
import {
  asPrediction,
  checkBatch,
  checkServiceForm,
  chooseBatchService,
  describeMemory,
  editService,
  initialBatchForm,
  initialServiceForm,
  jobTitle,
  pathInBucket,
  serviceName,
  toBatchRequest,
  toServiceRequest
} from '../serverlessForm';

const NEEDS = { cpu: 1, gpu: 0, memory_MB: 1500, gpu_memory_MB: 0 };

describe('the Make serverless form', () => {
  it("starts from the module's name and needs, in the deploy form's units, with folders after the name", () => {
    expect(initialServiceForm('fish-detector', NEEDS)).toEqual({
      name: 'fish-detector',
      cpu: '1',
      memoryGB: '1.5',
      input: 'fish-detector/in',
      output: 'fish-detector/out',
      inputTyped: false,
      outputTyped: false
    });
    // a module that says nothing gets 1 CPU and 2 GB
    expect(initialServiceForm('Reef_Survey.Tool v2')).toMatchObject({
      name: 'reef-survey-tool-v2',
      cpu: '1',
      memoryGB: '2'
    });
  });

  it('names services as the server does: lowercase, dashes, 39 characters, no dash at the end', () => {
    expect(serviceName('YOLO object detector')).toBe('yolo-object-detector');
    expect(serviceName('x'.repeat(38) + '-y')).toBe('x'.repeat(38));
  });

  it('moves untouched folders along with the name, and keeps typed ones', () => {
    let state = editService(initialServiceForm('fish-detector', NEEDS), 'name', 'reef-fish');
    expect([state.input, state.output]).toEqual(['reef-fish/in', 'reef-fish/out']);
    state = editService(state, 'output', 'results/fish');
    state = editService(state, 'name', 'reef-fish-2');
    expect([state.input, state.output]).toEqual(['reef-fish-2/in', 'results/fish']);
  });

  it('checks the name, the numbers and the folders, and warns below what the module recommends', () => {
    const good = initialServiceForm('fish-detector', NEEDS);
    expect(checkServiceForm(good, NEEDS, 'ana')).toEqual({ errors: {}, warnings: [] });
    const bad = { ...good, name: 'Fish Detector', cpu: '0', memoryGB: 'lots', input: '../up', output: 'a//b' };
    const { errors } = checkServiceForm(bad, NEEDS, 'ana');
    expect(Object.keys(errors).sort()).toEqual(['cpu', 'input', 'memoryGB', 'name', 'output']);
    expect(errors.name).toMatch(/lowercase letters/);
    expect(errors.memoryGB).toBe('Enter a number.');
    const inside = checkServiceForm({ ...good, output: 'fish-detector/in/results' }, NEEDS, 'ana');
    expect(inside.errors.output).toMatch(/outside the input folder/);
    const small = checkServiceForm({ ...good, memoryGB: '1' }, NEEDS, 'ana');
    expect(small.warnings).toEqual(['The module recommends 1.5 GB memory: with less it may be slow or fail.']);
    // no input folder: allowed, and said what it means
    expect(checkServiceForm({ ...good, input: '' }, NEEDS, 'ana').warnings[0]).toMatch(/uploads start no job/);
    // without platform storage the folders are not asked for at all
    expect(checkServiceForm({ ...good, input: '../up' }, NEEDS, null).errors).toEqual({});
  });

  it('sends the folders as paths in the bucket, memory in decimal megabytes', () => {
    const state = editService(initialServiceForm('fish-detector', NEEDS), 'memoryGB', '2.5');
    expect(toServiceRequest('fish-detector', { ...state, output: '/fish-detector/out/' }, 'ana')).toEqual({
      module: 'fish-detector',
      name: 'fish-detector',
      cpu: '1',
      memory: '2500M',
      inputs: ['ana/fish-detector/in'],
      outputs: ['ana/fish-detector/out']
    });
    expect(toServiceRequest('fish-detector', { ...state, input: ' ' }, 'ana').inputs).toEqual([]);
    expect(toServiceRequest('fish-detector', state, null)).toMatchObject({ inputs: [], outputs: [] });
  });
});

describe('services in words', () => {
  it('gives memory in GB whatever unit the service was written in', () => {
    expect(describeMemory('2000M')).toBe('2 GB');
    expect(describeMemory('2Gi')).toBe('2.1 GB');
    expect(describeMemory('256Mi')).toBe('268 MB');
    expect(describeMemory('a lot')).toBe('a lot');
  });

  it("finds a path in the user's own bucket only", () => {
    expect(pathInBucket('ana/fish/in/reef.jpg', 'ana')).toBe('fish/in/reef.jpg');
    expect(pathInBucket('ana--lake/fish/in', 'ana')).toBeNull();
    expect(pathInBucket('anabel/fish', 'ana')).toBeNull();
    expect(pathInBucket('ana/x', null)).toBeNull();
  });

  it("names a job after the user's file when the engine knows it", () => {
    const job = { name: 'fish-1b2c', status: 'Succeeded', creation_time: null, start_time: null, finish_time: null };
    expect(jobTitle({ ...job, file: 'reef.jpg' })).toBe('reef.jpg');
    expect(jobTitle({ ...job, file: '' })).toBe('fish-1b2c');
  });

  it('reads a detection however the module wrapped it, and nothing else', () => {
    const prediction = { file: 'reef.jpg', width: 640, height: 480, time_ms: 12, detections: [] };
    expect(asPrediction(prediction)).toBe(prediction);
    expect(asPrediction({ status: 'ok', predictions: prediction })).toBe(prediction);
    expect(asPrediction([prediction])).toBe(prediction);
    expect(asPrediction({ file: 'x', bytes: 12 })).toBeNull();
    expect(asPrediction('text')).toBeNull();
  });

  it('sends any file name in the header, percent-encoded (RFC 8187)', () => {
    expect(contentDisposition('reef.jpg')).toBe("attachment; filename*=UTF-8''reef.jpg");
    expect(contentDisposition("plongée (2)'s.jpg")).toBe(
      "attachment; filename*=UTF-8''plong%C3%A9e%20%282%29%27s.jpg"
    );
  });
});

describe('the batch form', () => {
  const withOutput: Serverless.IService = { name: 'fish', output: [{ path: 'ana/fish/out/' }] };
  const without: Serverless.IService = { name: 'counter' };

  it("pre-fills the output with the service's own, following the service until typed", () => {
    let state = initialBatchForm([withOutput, without]);
    expect(state).toEqual({ service: 'fish', inputs: '', output: 'ana/fish/out', outputTyped: false });
    state = chooseBatchService(state, without);
    expect(state.output).toBe('');
    expect(checkBatch({ ...state, inputs: 'ana/survey' })).toBe(
      'Give a bucket/folder for the results: counter has no output folder of its own.'
    );
    state = chooseBatchService({ ...state, output: 'ana/counts', outputTyped: true }, withOutput);
    expect(state.output).toBe('ana/counts');
  });

  it('asks for the files, and sends the folders without slashes around them', () => {
    const state = initialBatchForm([withOutput]);
    expect(checkBatch(state)).toMatch(/files to process/);
    expect(checkBatch({ ...state, inputs: 'ana/fish/out' })).toMatch(/another folder/);
    const ready = { ...state, inputs: '/ana/survey/' };
    expect(checkBatch(ready)).toBeNull();
    expect(toBatchRequest(ready)).toEqual({ service: 'fish', inputs: 'ana/survey', output: 'ana/fish/out' });
  });
});
